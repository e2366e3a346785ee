"""The label sets esva knows by name: each class list is defined here once, in its source's order.

``CLASS_SETS`` is what ``--classes mer2023`` / ``ravdess`` / ``merr`` / ``ser7`` resolve to.
"""

from __future__ import annotations

# The six MER2023 classes, in MERTools' index order (emo2idx in MER2023's main-release.py).
MER2023_CLASSES: tuple[str, ...] = ("neutral", "angry", "happy", "sad", "worried", "surprise")
# RAVDESS emotion codes 01..08 (Livingstone & Russo 2018), in code order.
RAVDESS_CLASSES: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)


# esva's cross-corpus speech-emotion space (esva.data.label_mapping, target "ser7"): the
# categories the acted speech corpora share, in RAVDESS's spelling and order minus calm.
SER7_CLASSES: tuple[str, ...] = tuple(c for c in RAVDESS_CLASSES if c != "calm")

# Emotion-LLaMA's nine labels (first_face.py: the MER six, then fear, contempt, doubt).
MERR_CLASSES: tuple[str, ...] = (*MER2023_CLASSES, "fear", "contempt", "doubt")

# FER+ (Barsoum et al., 2016): the 8 emotions its annotators voted on, in label.csv's column
# order (then "unknown" and "not-a-face"); the face expert's output classes.
FERPLUS_CLASSES: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)

CLASS_SETS: dict[str, tuple[str, ...]] = {
    "mer2023": MER2023_CLASSES,
    "ravdess": RAVDESS_CLASSES,
    "merr": MERR_CLASSES,
    "ser7": SER7_CLASSES,
}
