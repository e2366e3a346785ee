"""Per-modality projection, attention pooling over time, and fusion of audio, visual and text.

Two kinds of fusion live here: the ESVA model's learned fusion head (``classifier``, trained
jointly with the alignment module on audio-visual data), and reliability-weighted late fusion of
separately trained, calibrated experts (``reliability``: the log-linear pool and its weights;
``label_spaces``: each expert's classes mapped to the output space; ``spec``: ``fusion.json``),
which the shipped default uses (``esva.apps.fused``).
"""

from esva.fusion.classifier import MODALITIES, FusionClassifier, FusionOutput
from esva.fusion.pooling import AttentionPool

__all__ = ["MODALITIES", "AttentionPool", "FusionClassifier", "FusionOutput"]
