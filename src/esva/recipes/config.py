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
from typing import Any, ClassVar, Self

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


# Limits of the options both recipes' ``train`` sections have (see LoopConfig.from_section).
TRAIN_LIMITS: dict[str, Any] = {
    "epochs": AT_LEAST_ONE,
    "batch_size": AT_LEAST_ONE,
    "lr": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "grad_clip": NON_NEGATIVE,  # 0: no clipping
    "seed": NON_NEGATIVE,  # numpy's generators refuse negative seeds
    "checkpoint_every": NON_NEGATIVE,
}


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
    # Draw each corpus, then each speaker inside it, equally often (with replacement); the
    # corpus is the prefix of the speaker id ("tess:OAF", as esva.data.corpora.load_corpora
    # writes them). For training across corpora (esva.recipes.sampler).
    corpus_speaker_balanced: bool = False
    epoch_size: int = 0  # draws per epoch; 0: the number of training clips
    num_workers: int = 0
    checkpoint_every: int = 0  # optimizer steps between mid-epoch checkpoints (0: epochs only)
    out_dir: str = "runs/esva"
    cpu: bool = False  # force CPU even where an accelerator exists
    progress: bool = True

    LIMITS: ClassVar[dict[str, Any]] = {
        **TRAIN_LIMITS,
        "warmup_epochs": NON_NEGATIVE,
        "patience": AT_LEAST_ONE,
        "monitor": MONITORS,
        "num_workers": NON_NEGATIVE,
        "epoch_size": NON_NEGATIVE,
    }


class SectionedRunConfig:
    """What a run config of ``model``, ``data`` and ``train`` sections shares (ESVA, LLM).

    A subclass is a dataclass with those three fields and its own ``from_dict``; ``load`` reads
    the YAML file and has the subclass read its relative data paths against the file's folder.
    """

    model: Any
    data: Any
    train: Any

    @classmethod
    def from_dict(cls, raw: Any, source: str | Path | None = None) -> Self:
        raise NotImplementedError

    @staticmethod
    def read_sections(
        raw: Any, source: str | Path | None, what: str, model: type | None, data: type, train: type
    ) -> tuple[Any, Any, Any]:
        """The ``model``, ``data`` and ``train`` sections of ``raw``, each read by
        ``config_section`` into its class (a missing one takes its defaults; unknown sections,
        keys and wrong types are refused by name). ``what`` names the recipe in the error.
        ``model=None``: the model section comes back as a checked mapping, for a model config
        with its own ``from_dict`` (ESVA, the language models)."""
        if not isinstance(raw, dict):
            raise EsvaError(f"{what} run config must be a mapping with model/data/train", source)
        refuse_unknown(raw, ("model", "data", "train"), source, "config sections")
        given = raw.get("model") or {}
        if model is None and not isinstance(given, dict):
            raise EsvaError("'model' section must be a mapping", source)
        return (
            dict(given) if model is None else config_section(model, given, "model", source),
            config_section(data, raw.get("data") or {}, "data", source),
            config_section(train, raw.get("train") or {}, "train", source),
        )

    def resolve_paths(self, folder: Path) -> None:
        """Make the data section's relative paths relative to ``folder`` (the config's)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(),
            "data": dataclasses.asdict(self.data),
            "train": dataclasses.asdict(self.train),
        }

    @classmethod
    def load(cls, path: str | Path) -> Self:
        return cls.from_file(read_yaml(Path(path)), Path(path))

    @classmethod
    def from_file(cls, raw: Any, path: Path) -> Self:
        """The run config of ``raw``, the parsed YAML file ``path``: its ``recipe:`` key (the
        registry's) must name this class's recipe; data paths are read against the folder."""
        if isinstance(raw, dict) and "recipe" in raw:
            from esva.recipes.registry import recipe_config_class

            raw = dict(raw)
            name = raw.pop("recipe")
            if recipe_config_class(name, path) is not cls:
                raise EsvaError(f"a config of the {name!r} recipe, not a {cls.__name__}", path)
        run = cls.from_dict(raw, path)
        # Relative data paths are relative to the config file, so configs travel with data.
        run.resolve_paths(path.parent)
        return run


@dataclass
class RunConfig(SectionedRunConfig):
    model: ESVAConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str | Path | None = None) -> RunConfig:
        if not isinstance(raw, dict) or "model" not in raw:
            raise EsvaError(
                "config needs a 'model' section (and optionally 'data', 'train')", source
            )
        _, data, train = cls.read_sections(raw, source, "ESVA", None, DataConfig, TrainConfig)
        return cls(ESVAConfig.from_dict(raw["model"], source), data, train)

    def resolve_paths(self, folder: Path) -> None:
        if not Path(self.data.root).is_absolute():
            self.data.root = str((folder / self.data.root).resolve())
