"""A torch ``Dataset`` over a feature store and the collate function that pads a batch.

Every clip is brought onto the model's frame rates (``audio_fps``, ``visual_fps``) and onto the
container clock: a stream that starts ``start_s`` after the container's zero gets that many
masked frames in front, so the alignment module sees the true recorded offset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from esva.data.clip_table import ClipLabel, read_clip_table
from esva.data.streams import clip_path, combine, read_header, read_stream
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
    b = len(items)
    batch: dict = {
        "name": [it["name"] for it in items],
        "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
    }
    val = [it.get("valence") for it in items]
    batch["valence"] = torch.tensor([v if v is not None else 0.0 for v in val], dtype=torch.float32)
    batch["valence_mask"] = torch.tensor([v is not None for v in val], dtype=torch.bool)
    for m in modalities:
        present = [it for it in items if m in it]
        if not present:
            continue
        t = max(len(it[m]) for it in present)
        d = present[0][m].shape[1]
        x = torch.zeros(b, t, d)
        mask = torch.zeros(b, t, dtype=torch.bool)
        for i, it in enumerate(items):
            if m in it:
                n = len(it[m])
                x[i, :n] = torch.from_numpy(it[m])
                mask[i, :n] = torch.from_numpy(it[f"{m}_mask"])
        batch[m], batch[f"{m}_mask"] = x, mask
    return batch
