"""Clips and their labels, before and after extraction.

``sources``        :class:`ClipSource` (a clip's media files, label, speaker, text), media suffixes
``datasets``       corpus adapters (RAVDESS, TESS, EMOVO, ASED, EmoDB, CREMA-D, MELD, MER, MERR)
``label_mapping``  each corpus's labels onto a target space (``mer6``, ``ser7``)
``folds``          speaker-independent folds, committed for the benchmarks
``clip_table``     a feature store's ``labels.csv`` (name, discrete, valence, speaker, split)
``streams``        a clip's feature stream (``StreamFeatures``: what every encoder returns and the
                   model reads) with its ``EncoderRecord``, one safetensors file per clip and
                   stream, and bringing streams to one rate
``synthetic``      the seeded audio-visual corpus of ``esva demo``
``ferplus``        FER+ face images and their 10-annotator votes (the face expert's training data)
"""
