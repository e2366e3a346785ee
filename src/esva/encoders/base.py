"""The contract every encoder fulfils (timm-style: same ``encode`` for all, a registry by name).

``encode`` returns :class:`esva.data.streams.StreamFeatures` (the one container of a clip's
feature stream) stamped with the encoder's :class:`esva.data.streams.EncoderRecord`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from esva.data.streams import EncoderRecord, StreamFeatures


class Encoder(torch.nn.Module, ABC):
    """Base class: subclasses set ``modality`` and ``dim`` and implement :meth:`encode`.

    ``encode`` takes the modality's media type (``esva.media.AudioClip`` for audio,
    ``esva.media.FaceTrack`` for visual, ``str`` for text) and never trains: it runs under
    ``torch.inference_mode``. It returns the clip's :class:`~esva.data.streams.StreamFeatures`
    with the encoder's :attr:`record`: the object the extractor keeps and the model reads.
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
    def encode(self, inputs: Any) -> StreamFeatures: ...

    @property
    def record(self) -> EncoderRecord:
        return EncoderRecord(self.name, self.version, self.weights_sha256, self.record_layer)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, modality={self.modality!r}, dim={self.dim}"


__all__ = ["Encoder", "EncoderRecord", "StreamFeatures"]
