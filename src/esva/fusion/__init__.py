"""Per-modality projection, attention pooling over time, and fusion of audio, visual and text."""

from esva.fusion.classifier import MODALITIES, FusionClassifier, FusionOutput
from esva.fusion.pooling import AttentionPool

__all__ = ["MODALITIES", "AttentionPool", "FusionClassifier", "FusionOutput"]
