"""Run configuration: ``model`` (ESVAConfig), ``data`` and ``train`` sections of one YAML file.

Example (``configs/demo.yaml``)::

    model: {audio_dim: 32, visual_dim: 16, text_dim: 16, use_valence: true}
    data:  {root: demo-data, streams: {audio: audio, visual: visual, text: text}}
    train: {epochs: 30, batch_size: 32, lr: 0.002, out_dir: runs/esva}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from esva.errors import EsvaError
from esva.model.config import ESVAConfig
from esva.settings import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    Range,
    config_section,
    read_yaml,
    refuse_unknown,
)

# What ``train.monitor`` may name: the validation scores of esva.recipes.train_esva.
MONITORS = ("weighted_f1", "accuracy", "macro_f1", "uar")


@dataclass
class DataConfig:
    root: str = "data"
    labels: str = "labels.csv"
    streams: dict[str, str] = field(
        default_factory=lambda: {"audio": "audio", "visual": "visual", "text": "text"}
    )
    # With a ``split`` column in labels.csv these name the splits; without one, a validation
    # share is held out (whole speakers when a ``speaker`` column exists).
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    val_fraction: float = 0.15

    LIMITS: ClassVar[dict[str, Any]] = {"val_fraction": Range(0, 1, high_open=True)}


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0
    seed: int = 0
    patience: int | None = 8  # early stopping: epochs without a better score (null: off)
    monitor: str = "weighted_f1"  # validation metric to maximise
    balanced_sampling: bool = False  # draw classes equally often (with replacement)
    num_workers: int = 0
    checkpoint_every: int = 0  # optimizer steps between mid-epoch checkpoints (0: epochs only)
    out_dir: str = "runs/esva"
    cpu: bool = False  # force CPU even where an accelerator exists
    progress: bool = True

    LIMITS: ClassVar[dict[str, Any]] = {
        "epochs": AT_LEAST_ONE,
        "batch_size": AT_LEAST_ONE,
        "lr": POSITIVE,
        "weight_decay": NON_NEGATIVE,
        "warmup_epochs": NON_NEGATIVE,
        "grad_clip": NON_NEGATIVE,  # 0: no clipping
        "seed": NON_NEGATIVE,  # numpy's generators refuse negative seeds
        "patience": AT_LEAST_ONE,
        "monitor": MONITORS,
        "num_workers": NON_NEGATIVE,
        "checkpoint_every": NON_NEGATIVE,
    }


@dataclass
class RunConfig:
    model: ESVAConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(),
            "data": dataclasses.asdict(self.data),
            "train": dataclasses.asdict(self.train),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str | Path | None = None) -> RunConfig:
        if not isinstance(raw, dict) or "model" not in raw:
            raise EsvaError(
                "config needs a 'model' section (and optionally 'data', 'train')", source
            )
        refuse_unknown(raw, ("model", "data", "train"), source, "config sections")
        return cls(
            ESVAConfig.from_dict(raw["model"], source),
            config_section(DataConfig, raw.get("data") or {}, "data", source),
            config_section(TrainConfig, raw.get("train") or {}, "train", source),
        )

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        run = cls.from_dict(read_yaml(path), path)
        # Relative data roots are relative to the config file, so configs travel with data.
        if not Path(run.data.root).is_absolute():
            run.data.root = str((path.parent / run.data.root).resolve())
        return run
