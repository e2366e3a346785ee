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
from typing import Any

import yaml

from esva.config import ESVAConfig
from esva.errors import EsvaError


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


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0
    seed: int = 0
    patience: int = 8  # early stopping: epochs without a better validation score
    monitor: str = "weighted_f1"  # validation metric to maximise
    balanced_sampling: bool = False  # draw classes equally often (with replacement)
    num_workers: int = 0
    out_dir: str = "runs/esva"
    cpu: bool = False  # force CPU even where an accelerator exists
    progress: bool = True


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
        unknown = sorted(set(raw) - {"model", "data", "train"})
        if unknown:
            raise EsvaError(f"unknown config sections {unknown}", source)
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


def read_yaml(path: Path) -> Any:
    """The parsed YAML of a run config; a missing or malformed file is a one-line error."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EsvaError("config file not found", path) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise EsvaError(f"not valid YAML ({' '.join(str(exc).split())})", path) from None


def config_section(kind: type, values: Any, name: str, source: str | Path | None):
    """Build dataclass ``kind`` from a config section, refusing unknown keys by name."""
    if not isinstance(values, dict):
        raise EsvaError(f"'{name}' section must be a mapping", source)
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise EsvaError(f"unknown keys {unknown} in '{name}' (known: {sorted(known)})", source)
    try:
        return kind(**values)
    except TypeError as exc:
        raise EsvaError(f"bad '{name}' section ({exc})", source) from None
