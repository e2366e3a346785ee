"""``esva align``: one file -> audio + face/mouth frames -> sync-space features -> τ*.

The steps (``esva.pipeline("align")`` and the ``esva align`` command run them):

1. **media** (:func:`esva.sync.clip_media.load_clip_media`): the audio decoded to 16 kHz and the
   main face tracked through every frame, with grey face and mouth crops;
2. **features** (:meth:`esva.sync.space.SyncSpace.features`): log-mel audio frames and pooled
   mouth + face pixels on one 50 Hz grid (Eq. 3), projected by the shipped sync heads;
3. **estimate** (:func:`esva.sync.estimate.align_media`): Eq. 4-6 and 8-9, sub-frame, flagged
   where the data cannot support it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from esva.io import atomic_path
from esva.sync.estimate import ClipAlignment


def plot_alignment(result: ClipAlignment, out: str | os.PathLike) -> Path:
    """Two panels: C(τ) and L_align(τ) against the audio lag; local offsets over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    est = result.estimate
    if est is None:
        raise ValueError("the result carries no curves to plot")
    lags = -1000.0 * est.taus_s
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 6), constrained_layout=True)
    ax1.plot(lags, est.xcorr, label="C(τ) global correlation (Eq. 5)")
    ax1.plot(lags, -est.cost, label="−L_align(τ) = β·C − α·D (Eq. 8)", alpha=0.8)
    if math.isfinite(result.offset_ms):
        ax1.axvline(result.offset_ms, color="k", ls="--", lw=1)
    ax1.set_xlabel("audio lag (ms; > 0: audio late)")
    ax1.set_title(
        f"{Path(result.file).name}: offset {result.offset_ms:+.1f} ms, "
        f"confidence {result.confidence:.2f}"
    )
    ax1.legend(fontsize=8)
    starts = np.asarray(result.window_start_s, dtype=float)
    local = np.array([np.nan if v is None else v for v in result.local_offsets_ms], dtype=float)
    ax2.plot(starts + result.window_s / 2, local, "o-", label="local offset τ_i* (Eq. 6)")
    if math.isfinite(result.offset_ms):
        ax2.axhline(result.offset_ms, color="k", ls="--", lw=1, label="global τ*")
    ax2.set_xlabel("time (s, window centre)")
    ax2.set_ylabel("audio lag (ms)")
    ax2.legend(fontsize=8)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
    return out
