"""From raw media files to the feature store the models train on (``esva extract``).

``inputs``         what ``--data`` names (a corpus, a CSV, a folder, a glob) -> clip sources
``pipeline``       one clip -> its feature streams (:class:`FeatureExtractor`)
``clip``           one clip analysed once for inference (:class:`ClipAnalysis`): decoded audio,
                   one face track, the streams and the settings that made them
``feature_store``  the store on disk: stream files, manifest, ``extract.json``, ``labels.csv``
``run``            many clips: resumable, ``--workers`` processes, ranks under torchrun
``provenance``     ``extraction.json`` in model folders, and the extractor that reproduces it
"""
