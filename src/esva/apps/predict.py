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

__all__ = ["Prediction", "Recognizer", "plot_timeline", "timeline_figure"]


def plot_timeline(pred: Prediction, classes: list[str], path: str | Path) -> Path:
    """Per-window class probabilities over time (stacked), with the overall label and offset,
    written as a PNG (see :func:`timeline_figure`)."""
    fig = timeline_figure(pred, classes)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path


def timeline_figure(pred: Prediction, classes: list[str]):
    """The timeline as a matplotlib Figure: one panel per track, each with gid ``track-<name>``.

    A fused prediction (``pred.per_modality``) gets the fused answer, then the voice model's
    and the face expert's own per-window probabilities (each titled with its clip-level fusion
    weight; the face panel marks the most expressive frame); a plain model one panel.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tracks: list[tuple[str, list[dict]]] = [("fused", pred.timeline)]
    for name in pred.per_modality or {}:
        windows = [
            {**w, "probabilities": w["per_modality"][name]["probabilities"]}
            for w in pred.timeline
            if name in w.get("per_modality", {})
        ]
        tracks.append((name, windows))
    fig = Figure(figsize=(8, 1.2 + 2.3 * len(tracks)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(tracks), 1, sharex=True, squeeze=False)[:, 0]
    offset = "n/a" if pred.offset_ms is None else f"{pred.offset_ms:+.0f} ms"
    for ax, (name, windows) in zip(axes, tracks, strict=True):
        _stack(ax, windows, classes)
        ax.set_gid(f"track-{name}")  # tests and readers find each track by name
        if name == "fused":
            ax.set_title(
                f"{display_name(Path(pred.file)).rsplit('/', 1)[-1]}: {pred.label} "
                f"(audio lag {offset}; {'+'.join(pred.modalities)})",
                fontsize=9,
            )
        else:
            m = pred.per_modality[name]
            ax.set_title(f"{name}: {m['label']} (fusion weight {m['weight']:.2f})", fontsize=9)
            if name == "face" and m.get("peak_time_s") is not None and len(windows) > 1:
                ax.axvline(m["peak_time_s"], color="k", lw=0.8, ls="--", label="peak face")
        ax.set_ylabel("probability" if len(tracks) == 1 else f"{name}\np", fontsize=8)
    if len(pred.timeline) > 1:
        axes[0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
        axes[-1].set_xlabel("time (s, window centre)")
        axes[-1].set_xlim(0.0, max(pred.duration_s, pred.timeline[-1]["end_s"]))
    fig.tight_layout()
    return fig


def _stack(ax, windows: list[dict], classes: list[str]) -> None:
    """One panel: stacked probabilities at window centres, or bars for a single window."""
    if not windows:
        ax.text(0.5, 0.5, "no windows", ha="center", va="center", transform=ax.transAxes)
        return
    centres = np.array([(w["start_s"] + w["end_s"]) / 2 for w in windows])
    probs = np.array([[w["probabilities"][c] for c in classes] for w in windows])
    if len(centres) > 1:
        ax.stackplot(centres, probs.T, labels=classes, alpha=0.85)
        ax.set_ylim(0, 1)
    else:
        ax.bar(classes, probs[0], color=[f"C{i}" for i in range(len(classes))])
        ax.tick_params(axis="x", labelsize=7)
