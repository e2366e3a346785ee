"""What the face-expression CNN encoders share: checking a face track, batching it through the net.

``fer-cnn`` and ``face-expert`` differ in their network and preprocessing only; both turn a
:class:`~esva.media.types.FaceTrack` into one row per track frame (embedding + logits), zeros
and ``mask=False`` where the tracker found no face.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from esva.encoders.base import EncodedFeatures, EncoderRecord
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


def encode_face_track(
    track: FaceTrack,
    dim: int,
    preprocess: Callable[[np.ndarray], np.ndarray],
    forward: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    record: EncoderRecord,
) -> EncodedFeatures:
    """One ``dim``-wide row per track frame: embedding then logits, for the frames with a face.

    ``preprocess`` gets the uint8 crops of the masked frames only, ``forward`` its output; the
    rows of the frames without a face stay zero.
    """
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
    features = np.zeros((n, dim), np.float32)
    if mask.any():
        emb, logits = forward(preprocess(crops[mask]))
        features[mask] = np.concatenate([emb, logits], axis=1)
    timestamps = np.asarray(track.timestamps_s, dtype=np.float64)
    return EncodedFeatures(
        features=features,
        fps=track_fps(timestamps),
        start_s=float(timestamps[0]) if len(timestamps) else 0.0,
        mask=mask,
        record=record,
    )


def track_fps(timestamps: np.ndarray) -> float:
    """Mean frame rate of a track from its timestamps (0.0 for fewer than two frames)."""
    if len(timestamps) < 2:
        return 0.0
    span = float(timestamps[-1] - timestamps[0])
    return (len(timestamps) - 1) / span if span > 0 else 0.0
