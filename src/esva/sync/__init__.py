"""The learned audio-video sync space behind ``esva align`` (the paper's Eq. 4-5 need one).

``space``        log-mel and face/mouth-pixel frame features, the learned linear heads
                 (:class:`SyncSpace`), their SyncNet-style trainer and the shipped weights
``baselines``    offset baselines the benchmark compares against (raw xcorr, DTW, energy/mouth)
``controllers``  adaptive alignment controllers that track a drifting offset over windows
``degrade``      known shifts and noise injected into real clips, for the benchmarks

The paper's alignment math itself (Eq. 3-9) is :mod:`esva.align`; the command-line tool that
decodes a clip and reports its offset is :mod:`esva.apps.align`.
"""
