"""``ESVAConfig``: every architectural and loss choice of the ESVA model in one dataclass.

Saved as ``config.json`` next to the weights; the ablations of the paper's Table 6 are flags
(``use_msfe``, ``use_contrastive``, ``use_alignment``), the loss weights are the paper's
α, β (Eq. 8), λ (Eq. 7) and μ for the contrastive term (Eq. 2).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esva.errors import EsvaError
from esva.labelsets import MER2023_CLASSES
from esva.settings import config_from_dict

# Fields that change the shapes or meaning of the weights: a checkpoint only loads into a
# config that agrees on all of them.
ARCHITECTURE_FIELDS: tuple[str, ...] = (
    "classes",
    "audio_dim",
    "visual_dim",
    "text_dim",
    "hidden_dim",
    "msfe_kernel_sizes",
    "msfe_dilations",
    "use_msfe",
    "use_alignment",
    "use_valence",
    "sync_dim",
    "contrastive_dim",
)


@dataclass
class ESVAConfig:
    # Label space.
    classes: list[str] = field(default_factory=lambda: list(MER2023_CLASSES))
    # Input feature dimensions; None = the modality is not used by this model.
    audio_dim: int | None = None
    visual_dim: int | None = None
    text_dim: int | None = None
    # Frame rates the model sees (the data loader resamples every clip to these).
    audio_fps: float = 50.0
    visual_fps: float = 25.0
    align_fps: float = 25.0  # Eq. 3: the common rate of the alignment module
    hidden_dim: int = 128
    # MSFE (Eq. 1): (kernel, dilation) per branch; at 50 Hz 20 ms .. ~1 s.
    msfe_kernel_sizes: list[int] = field(default_factory=lambda: [1, 3, 3, 5, 7])
    msfe_dilations: list[int] = field(default_factory=lambda: [1, 1, 4, 6, 8])
    # Ablation switches (Table 6).
    use_msfe: bool = True
    use_contrastive: bool = True
    use_alignment: bool = True
    use_valence: bool = False
    # Alignment (Eq. 3-9).
    sync_dim: int = 32
    max_offset_s: float = 0.5
    align_window_s: float = 1.0  # Δt of the local windows (Eq. 4)
    align_hop_s: float = 0.5
    align_temperature: float = 0.05  # soft-argmin temperature of the differentiable L_align
    alpha: float = 1.0  # weight of D_local in L_align (Eq. 8)
    beta: float = 1.0  # weight of C_global in L_align (Eq. 8)
    # Total loss (Eq. 7): L = L_align + λ·L_emo + μ·L_contrast.
    lambda_emo: float = 1.0
    mu_contrast: float = 0.1
    contrastive_temperature: float = 0.1
    contrastive_dim: int = 64
    valence_weight: float = 1.0
    # Regularisation.
    dropout: float = 0.1
    modality_dropout: float = 0.1  # per-sample chance to hide a present modality in training
    # Free-form provenance (which encoders produced the features); not architecture.
    encoders: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.classes = [str(c) for c in self.classes]
        self.msfe_kernel_sizes = [int(k) for k in self.msfe_kernel_sizes]
        self.msfe_dilations = [int(d) for d in self.msfe_dilations]
        problems = []
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            problems.append(f"classes must be at least two distinct names, got {self.classes}")
        dims = {
            "audio_dim": self.audio_dim,
            "visual_dim": self.visual_dim,
            "text_dim": self.text_dim,
        }
        if all(d is None for d in dims.values()):
            problems.append("at least one of audio_dim, visual_dim, text_dim must be set")
        problems += [
            f"{k} must be a positive integer, got {d!r}"
            for k, d in dims.items()
            if d is not None and (not isinstance(d, int) or d <= 0)
        ]
        for name in (
            "audio_fps",
            "visual_fps",
            "align_fps",
            "max_offset_s",
            "align_window_s",
            "align_hop_s",
            "align_temperature",
            "contrastive_temperature",
        ):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("alpha", "beta", "lambda_emo", "mu_contrast", "valence_weight"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.modality_dropout < 1 or not 0 <= self.dropout < 1:
            problems.append("dropout and modality_dropout must be in [0, 1)")
        if len(self.msfe_kernel_sizes) != len(self.msfe_dilations) or not self.msfe_kernel_sizes:
            problems.append(
                "msfe_kernel_sizes and msfe_dilations must have the same non-zero length"
            )
        if any(k < 1 or k % 2 == 0 for k in self.msfe_kernel_sizes):
            problems.append(f"msfe_kernel_sizes must be odd, got {self.msfe_kernel_sizes}")
        if problems:
            raise EsvaError("invalid ESVA config: " + "; ".join(problems))

    # --- modalities -------------------------------------------------------------------------
    @property
    def modalities(self) -> list[str]:
        """The modalities this model consumes, in fixed order (audio, visual, text)."""
        return [m for m in ("audio", "visual", "text") if getattr(self, f"{m}_dim") is not None]

    @property
    def aligns(self) -> bool:
        """Whether the model has the audio-visual joint stream (both modalities configured)."""
        return self.audio_dim is not None and self.visual_dim is not None

    # --- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | Path | None = None) -> ESVAConfig:
        return config_from_dict(cls, data, "model config", source)

    def save(self, path: str | Path) -> None:
        from esva.io import write_json

        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> ESVAConfig:
        from esva.io import read_json

        return cls.from_dict(read_json(path), path)

    def architecture_diff(self, other: ESVAConfig) -> list[str]:
        """Names and values of the architecture fields where ``other`` differs."""
        return [
            f"{name}: {getattr(self, name)!r} != {getattr(other, name)!r}"
            for name in ARCHITECTURE_FIELDS
            if getattr(self, name) != getattr(other, name)
        ]

    def replace(self, **changes: Any) -> ESVAConfig:
        return dataclasses.replace(self, **changes)

    def __str__(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
