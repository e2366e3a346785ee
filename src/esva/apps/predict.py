"""``esva predict``: one media file -> emotion, probabilities, timeline and audio-video offset.

A thin layer over :mod:`esva.apps.inference` (the one path from a file to an answer): the model
folder's ``extraction.json`` says how its features were made, the same encoders run on the file
with the same settings, the model sees the whole clip for the overall prediction and sliding
windows for the timeline, and the offset comes from the same decoded audio and video. A
modality the file lacks (no face, no audio track) is reported as missing, and the prediction is
made from what is there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from esva.apps.inference import Prediction, Recognizer
from esva.io import atomic_path
from esva.media.decode import display_name

__all__ = ["Prediction", "Recognizer", "plot_timeline", "predict_file"]


def predict_file(
    path: str | Path,
    model_dir: str | Path | None = None,
    audio: str | Path | None = None,
    window_s: float = 2.0,
    hop_s: float = 0.5,
    assume_default_extraction: bool = False,
) -> Prediction:
    """One file with the model in ``model_dir`` (None: the shipped default). To predict many
    files, load the model once: ``Recognizer.from_pretrained(dir)`` then ``.predict(path)``."""
    recognizer = Recognizer.from_pretrained(
        model_dir, assume_default_extraction=assume_default_extraction
    )
    return recognizer.predict(path, audio=audio, window_s=window_s, hop_s=hop_s)


def plot_timeline(pred: Prediction, classes: list[str], path: str | Path) -> Path:
    """Per-window class probabilities over time (stacked), with the overall label and offset."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    centres = np.array([(w["start_s"] + w["end_s"]) / 2 for w in pred.timeline])
    probs = np.array([[w["probabilities"][c] for c in classes] for w in pred.timeline])
    fig = Figure(figsize=(8, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if len(centres) > 1:
        ax.stackplot(centres, probs.T, labels=classes, alpha=0.85)
    else:
        ax.bar(classes, probs[0])
    offset = "n/a" if pred.offset_ms is None else f"{pred.offset_ms:+.0f} ms"
    ax.set_title(
        f"{display_name(Path(pred.file)).rsplit('/', 1)[-1]}: {pred.label} "
        f"(audio lag {offset}; {'+'.join(pred.modalities)})",
        fontsize=9,
    )
    if len(centres) > 1:
        ax.set_xlabel("time (s, window centre)")
        ax.set_ylabel("probability")
        ax.set_ylim(0, 1)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path
