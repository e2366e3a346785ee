"""The models' inputs: a torch ``Dataset`` over a feature store with the collate function that
pads a training batch, and the inference entry point from one clip's encoder streams.

Every clip is brought onto the model's frame rates (``audio_fps``, ``visual_fps``) and onto the
container clock: a stream that starts ``start_s`` after the container's zero gets that many
masked frames in front, so the alignment module sees the true recorded offset. Training reads
stream files into items (:class:`FeatureDataset`, :func:`collate`); inference reads a clip's
streams as extracted (:func:`clip_frames`, :func:`window_frames`) and pads them into the
model's input tensors (:func:`pad_frames`, :func:`forward_frames`): the same tensors, with no
item, label or valence made up for the purpose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from esva.data.clip_table import ClipLabel, read_clip_table
from esva.data.streams import StreamFeatures, clip_path, combine, read_header, read_stream
from esva.errors import EsvaError
from esva.model.config import ESVAConfig

DEFAULT_STREAMS = {"audio": "audio", "visual": "visual", "text": "text"}


def modality_fps(config: ESVAConfig, modality: str) -> float:
    """The frame rate the model wants a modality at (0 = utterance level, no resampling)."""
    return {"audio": config.audio_fps, "visual": config.visual_fps}.get(modality, 0.0)


@dataclass
class FeatureDataset(Dataset):
    """Clips of ``labels.csv`` under ``root`` with their stream files.

    ``streams`` maps a modality (audio, visual, text) to the sub-directory holding its files
    (e.g. ``{"audio": "whisper-tiny", "visual": "fer-cnn"}``). A clip without a file for a
    modality simply lacks it (the model flags the prediction); a clip with none is an error.
    """

    root: Path
    config: ESVAConfig
    labels_file: str = "labels.csv"
    streams: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_STREAMS))
    clips: list[ClipLabel] | None = None  # a subset (a split); default: all rows of the table

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise EsvaError("dataset directory not found", self.root)
        if self.clips is None:
            self.clips = read_clip_table(self.root / self.labels_file, self.config.classes)
        self.streams = {m: d for m, d in self.streams.items() if m in self.config.modalities}
        self.class_index = {c: i for i, c in enumerate(self.config.classes)}
        self._check_dims()

    def _check_dims(self) -> None:
        """Check the first clip of every stream against the config (headers only, cheap)."""
        for modality, spec in self.streams.items():
            expected = getattr(self.config, f"{modality}_dim")
            for clip in self.clips:
                paths = [clip_path(self.root, sub, clip.name) for sub in spec.split("+")]
                if all(p.exists() for p in paths):
                    shapes = [read_header(p)[0] for p in paths]
                    if (
                        any(len(sh) != 2 for sh in shapes)
                        or sum(sh[1] for sh in shapes) != expected
                    ):
                        raise EsvaError(
                            f"{modality} features have shape {' + '.join(map(str, shapes))} but "
                            f"the model config expects dimension {expected}",
                            paths[0],
                        )
                    break

    def subset(self, clips: list[ClipLabel]) -> FeatureDataset:
        return FeatureDataset(
            self.root, self.config, self.labels_file, dict(self.streams), list(clips)
        )

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        item: dict = {
            "name": clip.name,
            "label": self.class_index.get(clip.label, -1) if clip.label else -1,
            "valence": clip.valence,
        }
        found = False
        for modality, spec in self.streams.items():
            paths = [clip_path(self.root, sub, clip.name) for sub in spec.split("+")]
            if not all(p.exists() for p in paths):
                continue
            x, m = combine([read_stream(p) for p in paths], modality_fps(self.config, modality))
            if x.shape[1] != getattr(self.config, f"{modality}_dim"):
                raise EsvaError(
                    f"{modality} features have dimension {x.shape[1]}, the model config "
                    f"expects {getattr(self.config, f'{modality}_dim')}",
                    paths[0],
                )
            item[modality], item[f"{modality}_mask"] = x, m
            found = found or bool(m.any())
        if not found:
            raise EsvaError(
                f"clip {clip.name!r} has no usable feature file in any of "
                f"{sorted(self.streams.values())}",
                self.root,
            )
        return item


def collate(items: list[dict], modalities: list[str]) -> dict:
    """Pad a list of dataset items into a batch of tensors with (B, T) masks."""
    batch: dict = {
        "name": [it["name"] for it in items],
        "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
    }
    val = [it.get("valence") for it in items]
    batch["valence"] = torch.tensor([v if v is not None else 0.0 for v in val], dtype=torch.float32)
    batch["valence_mask"] = torch.tensor([v is not None for v in val], dtype=torch.bool)
    frames = [{m: (it[m], it[f"{m}_mask"]) for m in modalities if m in it} for it in items]
    batch.update(pad_frames(frames, modalities))
    return batch


# ----------------------------------------------------------------------------- inference
# A clip at inference is its encoder streams (esva.extract.clip.ClipAnalysis.streams): they go
# to the model as they are, resampled onto its rates and padded into its input tensors here,
# with no dataset item, label or collate in between.

# modality -> (frames (T, D) float32 at the model's rate on the container clock, mask (T,) bool)
ClipFrames = dict[str, tuple[np.ndarray, np.ndarray]]


def clip_frames(config: ESVAConfig, streams: Mapping[str, StreamFeatures]) -> ClipFrames:
    """A clip's model input straight from its encoder streams: per modality the model reads,
    its stream(s) (``config.encoders``; ``"a+b"`` joins two) on the model's frame rate and the
    container clock, as the dataset reads a store. A modality whose streams are missing or
    wholly masked is left out (the model reports it missing)."""
    frames: ClipFrames = {}
    for modality in config.modalities:
        names = config.encoders[modality].split("+")
        if all(n in streams for n in names):
            x, m = combine([streams[n] for n in names], modality_fps(config, modality))
            if m.any():
                frames[modality] = (x, m)
    return frames


def frames_duration(config: ESVAConfig, frames: ClipFrames) -> float:
    """Seconds the clip's time-sampled modalities (audio, visual) cover at the model's rates."""
    return max(
        (len(frames[m][0]) / modality_fps(config, m) for m in ("audio", "visual") if m in frames),
        default=0.0,
    )


def window_frames(
    config: ESVAConfig, frames: ClipFrames, grid: list[tuple[float, float]]
) -> list[tuple[tuple[float, float], ClipFrames]]:
    """The clip's frames cut to each ``(start_s, end_s)`` window of ``grid`` (clip-relative);
    utterance-level modalities (text) go whole into every window. Windows with no modality
    left are dropped."""
    out = []
    for t0, t1 in grid:
        window: ClipFrames = {}
        for m in config.modalities:
            if m not in frames:
                continue
            x, mask = frames[m]
            fps = modality_fps(config, m)
            if fps:
                a, b = round(t0 * fps), round(t1 * fps)
                x, mask = x[a:b], mask[a:b]
                if len(x) == 0 or not mask.any():
                    continue
            window[m] = (x, mask)
        if window:
            out.append(((t0, t1), window))
    return out


def pad_frames(clips: list[ClipFrames], modalities: list[str]) -> dict[str, torch.Tensor]:
    """The model's input tensors for a batch of clips: per modality ``(B, T, D)`` frames padded
    with zeros and their ``(B, T)`` mask (a clip without the modality: all False)."""
    b = len(clips)
    batch: dict[str, torch.Tensor] = {}
    for m in modalities:
        present = [c[m] for c in clips if m in c]
        if not present:
            continue
        t = max(len(x) for x, _ in present)
        d = present[0][0].shape[1]
        x = torch.zeros(b, t, d)
        mask = torch.zeros(b, t, dtype=torch.bool)
        for i, clip in enumerate(clips):
            if m in clip:
                frames, valid = clip[m]
                n = len(frames)
                x[i, :n] = torch.from_numpy(frames)
                mask[i, :n] = torch.from_numpy(valid)
        batch[m], batch[f"{m}_mask"] = x, mask
    return batch


def forward_frames(model: torch.nn.Module, clips: list[ClipFrames]) -> Any:
    """The model's output (``ESVAOutput`` or the pooled voice model's) for a batch of clips,
    without gradients: its inference entry point from the stream tensors."""
    with torch.no_grad():
        return model(pad_frames(clips, model.config.modalities))
