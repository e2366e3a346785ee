"""What the face-expression CNN encoders share: checking a face track, batching it through the net.

``fer-cnn`` and ``face-expert`` differ in their network and preprocessing only; both
(:class:`FaceCnnEncoder`) turn a :class:`~esva.media.types.FaceTrack` into one row per track
frame (embedding + logits), zeros and ``mask=False`` where the tracker found no face.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from esva.data.streams import StreamFeatures
from esva.encoders.base import Encoder
from esva.errors import EsvaError
from esva.media.types import FaceTrack


@torch.inference_mode()
def forward_in_batches(
    net: nn.Module,
    faces: np.ndarray,
    batch_size: int,
    dims: tuple[int, int],
    temperature: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed faces ``(N, 1, S, S)`` -> ``(embedding (N, dims[0]), logits/T (N, dims[1]))``.

    ``net`` returns ``(embedding, logits)``; inputs go channels-last, the layout its convs
    were converted to (oneDNN then needs no reorder around each conv).
    """
    emb, logits = [], []
    for start in range(0, len(faces), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(faces[start : start + batch_size]))
        e, lg = net(x.contiguous(memory_format=torch.channels_last))
        emb.append(e.numpy())
        logits.append((lg / temperature).numpy())
    if not emb:
        return np.zeros((0, dims[0]), np.float32), np.zeros((0, dims[1]), np.float32)
    return np.concatenate(emb), np.concatenate(logits)


class FaceCnnEncoder(Encoder):
    """A face-expression CNN on the tracker's grey crops: embedding + logits per track frame.

    Subclasses set ``embed_dim`` and ``dim`` (embedding + logits) and say how crops become
    network input (:meth:`preprocess`) and how that input becomes ``(embedding, logits)``
    (:meth:`forward_faces`).
    """

    embed_dim: ClassVar[int]

    modality = "visual"
    face_size = 64  # the tracker's crop side; each net resizes to its own input
    face_grey = True

    def __init__(self, name: str, config: Any, labels: Sequence[str]) -> None:
        super().__init__()
        self.name, self.config, self.labels = name, config, labels
        self.dim = self.embed_dim + len(labels)  # one row: embedding, then one logit per label

    @abstractmethod
    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        """uint8 crops ``(N, S, S, 1|3)`` -> the network's float input."""

    @abstractmethod
    def forward_faces(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessed faces -> ``(embedding (N, E), logits (N, C))``, E + C = ``dim``."""

    @classmethod
    def probabilities(cls, features: np.ndarray) -> np.ndarray:
        """Softmax of the logit columns of ``encode(...).features``: ``(T, classes)``."""
        logits = torch.from_numpy(np.asarray(features, np.float32)[:, cls.embed_dim :])
        return torch.softmax(logits, dim=-1).numpy()

    def encode(self, inputs: FaceTrack) -> StreamFeatures:
        """One feature row per track frame; frames without a face get zeros and mask False."""
        track = inputs
        crops = np.asarray(track.crops)
        mask = np.asarray(track.mask, dtype=bool)
        n = len(mask)
        if crops.ndim != 4 or crops.shape[-1] not in (1, 3) or crops.dtype != np.uint8:
            raise EsvaError(
                f"face crops must be (N, S, S, 3) RGB or (N, S, S, 1) grey uint8, "
                f"got {crops.shape} {crops.dtype}",
                track.source,
            )
        if not len(crops) == n == len(track.timestamps_s):
            raise EsvaError(
                f"face track lengths differ: {len(crops)} crops, {n} mask, "
                f"{len(track.timestamps_s)} timestamps",
                track.source,
            )
        features = np.zeros((n, self.dim), np.float32)
        if mask.any():
            emb, logits = self.forward_faces(self.preprocess(crops[mask]))
            features[mask] = np.concatenate([emb, logits], axis=1)
        timestamps = np.asarray(track.timestamps_s, dtype=np.float64)
        return StreamFeatures(
            features=features,
            fps=track_fps(timestamps),
            start_s=float(timestamps[0]) if len(timestamps) else 0.0,
            mask=mask,
            record=self.record,
        )


def track_fps(timestamps: np.ndarray) -> float:
    """Mean frame rate of a track from its timestamps (0.0 for fewer than two frames)."""
    if len(timestamps) < 2:
        return 0.0
    span = float(timestamps[-1] - timestamps[0])
    return (len(timestamps) - 1) / span if span > 0 else 0.0
