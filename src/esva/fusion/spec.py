"""``fusion.json``: how a model folder's voice model is fused with a face expert.

A model folder that holds ``fusion.json`` (the shipped default does) is answered by
reliability-weighted late fusion (:mod:`esva.fusion.reliability`) of its own ESVA model (the
voice expert) and the face-expression encoder named here; a folder without it is answered by
its ESVA model alone, exactly as before. The file::

    {"format": "esva-fusion/1",
     "classes": ["neutral", "happy", ...],           # output space (ser7)
     "experts": {"voice": {"source": "model", "temperature": 1.0, "base_weight": 0.7},
                 "face": {"encoder": "face-expert", "temperature": 1.0, "base_weight": 0.3}},
     "confidence_power": 0.0,                         # gamma
     "speech_full": 0.4,                              # active-speech share counted as full
     "confidence_threshold": 0.55,                    # optional: below it, the answer is
                                                      # marked uncertain (calibrated rule)
     "chosen_by": "benchmarks/fusion_dev.py -> results/fusion_dev.md"}

``temperature`` divides an expert's log-probabilities before mapping (1.0: the expert's own
calibration: the face expert's logits are already divided by the temperature fitted on FER+
valid). Each expert's classes are mapped to ``classes`` by :mod:`esva.fusion.label_spaces`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esva.errors import EsvaError

FUSION_NAME = "fusion.json"
FUSION_FORMAT = "esva-fusion/1"
EXPERTS = ("voice", "face")


@dataclass(frozen=True)
class ExpertSpec:
    temperature: float = 1.0
    base_weight: float = 0.5
    encoder: str | None = None  # the face expert's encoder name; None for the folder's model


@dataclass(frozen=True)
class FusionSpec:
    classes: tuple[str, ...]
    experts: dict[str, ExpertSpec]
    confidence_power: float = 0.0
    speech_full: float = 0.5
    # The calibrated rule for `confident`: the fused top probability must reach it (chosen on
    # out-of-corpus validation for a stated precision; None: no rule, always confident).
    confidence_threshold: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # provenance kept as written

    @property
    def face_encoder(self) -> str | None:
        face = self.experts.get("face")
        return face.encoder if face else None

    @property
    def base(self) -> dict[str, float]:
        return {name: e.base_weight for name, e in self.experts.items()}

    def to_dict(self) -> dict[str, Any]:
        experts = {}
        for name, e in self.experts.items():
            d: dict[str, Any] = {"temperature": e.temperature, "base_weight": e.base_weight}
            d.update({"encoder": e.encoder} if e.encoder else {"source": "model"})
            experts[name] = d
        return {
            "format": FUSION_FORMAT,
            "classes": list(self.classes),
            "experts": experts,
            "confidence_power": self.confidence_power,
            "speech_full": self.speech_full,
            **(
                {}
                if self.confidence_threshold is None
                else {"confidence_threshold": self.confidence_threshold}
            ),
            **self.extra,
        }

    @classmethod
    def from_dict(cls, obj: Any, where: Path | None = None) -> FusionSpec:
        def bad(problem: str) -> EsvaError:
            return EsvaError(f"fusion settings: {problem}", where)

        if not isinstance(obj, dict) or obj.get("format") != FUSION_FORMAT:
            raise bad(f"not an {FUSION_FORMAT} object")
        classes = obj.get("classes")
        if not isinstance(classes, list) or len(classes) < 2 or len(set(classes)) != len(classes):
            raise bad("'classes' must list at least two distinct class names")
        raw = obj.get("experts")
        if not isinstance(raw, dict) or not raw or set(raw) - set(EXPERTS):
            raise bad(f"'experts' must be a non-empty object with keys among {EXPERTS}")
        experts = {}
        for name, e in raw.items():
            if not isinstance(e, dict):
                raise bad(f"expert {name!r} must be an object")
            t, b = e.get("temperature", 1.0), e.get("base_weight")
            for key, v in (("temperature", t), ("base_weight", b)):
                if not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                    raise bad(f"{name}.{key} must be a finite number >= 0, got {v!r}")
            if t == 0:
                raise bad(f"{name}.temperature must be positive")
            encoder = e.get("encoder")
            if name == "face" and not isinstance(encoder, str):
                raise bad("the face expert needs an 'encoder' name (e.g. face-expert)")
            experts[name] = ExpertSpec(float(t), float(b), encoder)
        gamma, full = obj.get("confidence_power", 0.0), obj.get("speech_full", 0.5)
        if not isinstance(gamma, int | float) or not 0 <= gamma < 100:
            raise bad(f"confidence_power must be a number >= 0, got {gamma!r}")
        if not isinstance(full, int | float) or not 0 < full <= 1:
            raise bad(f"speech_full must be in (0, 1], got {full!r}")
        threshold = obj.get("confidence_threshold")
        if threshold is not None and (
            not isinstance(threshold, int | float) or not 0 <= threshold <= 1
        ):
            raise bad(f"confidence_threshold must be a probability in [0, 1], got {threshold!r}")
        known = {"format", "classes", "experts", "confidence_power", "speech_full",
                 "confidence_threshold"}  # fmt: skip
        extra = {k: v for k, v in obj.items() if k not in known}
        return cls(
            tuple(classes),
            experts,
            float(gamma),
            float(full),
            None if threshold is None else float(threshold),
            extra,
        )


def load_fusion(directory: str | Path) -> FusionSpec | None:
    """The folder's fusion settings, or None when it has no ``fusion.json``."""
    from esva.io import read_json

    path = Path(directory) / FUSION_NAME
    if not path.is_file():
        return None
    return FusionSpec.from_dict(read_json(path), path)


__all__ = ["FUSION_NAME", "ExpertSpec", "FusionSpec", "load_fusion"]
