"""In-memory media: a waveform array or RGB frames, made into what decoding a file makes.

The Python API (``esva.pipeline(...)(waveform, sample_rate=...)``) takes arrays. They follow
the same rules as :func:`esva.media.decode.load_audio` and :func:`~esva.media.decode.iter_frames`
(mono by averaging channels, soxr to 16 kHz streamed the same way, clipped to [-1, 1]; frames
resampled to a rate by the nearest frame), so an array and the same samples written to a
lossless file give the same features. Bad arrays raise a one-line :class:`EsvaError`.

:func:`sniff_suffix` names the container of raw bytes (an upload, ``pipe(b"...")``) from its
magic numbers, so that a temporary file gets a suffix the decoders and the apps recognise.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from esva.errors import EsvaError
from esva.media.types import AudioClip, VideoFrames

TARGET_SAMPLE_RATE = 16_000  # as esva.media.decode


def _as_numpy(value: Any, what: str) -> np.ndarray:
    """A numpy view of an array-like (numpy, torch, list); a one-line error otherwise."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without torch
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise EsvaError(f"{what} is not an array ({exc})") from None


def _rate(value: Any, name: str, needed: str, whole: bool = False, unit: str = "") -> float:
    """A rate argument (``sample_rate``, ``fps``) as a finite positive number (``whole``: a
    whole number, at least 1); one EsvaError line otherwise (``needed`` when it is missing:
    a bool is not a rate, although Python counts True as 1)."""
    if value is None or isinstance(value, bool):
        raise EsvaError(needed)
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise EsvaError(f"{name} must be a number{unit}, got {value!r}") from None
    fits = math.isfinite(rate) and (rate >= 1 and rate.is_integer() if whole else rate > 0)
    if not fits:
        kind = "whole number" if whole else "number"
        raise EsvaError(f"{name} must be a positive {kind}{unit}, got {value!r}")
    return rate


def audio_from_array(
    waveform: Any, sample_rate: int | float, target_rate: int = TARGET_SAMPLE_RATE
) -> AudioClip:
    """A waveform ``(n,)`` or ``(channels, n)`` of floats in [-1, 1] at ``sample_rate`` ->
    the :class:`AudioClip` :func:`~esva.media.decode.load_audio` would give for it."""
    import soxr

    x = _as_numpy(waveform, "the waveform")
    needed = "a waveform needs its sample_rate (e.g. sample_rate=16000)"
    rate = int(_rate(sample_rate, "sample_rate", needed, whole=True, unit=" of Hz"))
    if x.dtype.kind not in "fiu" or x.dtype == np.bool_:
        raise EsvaError(f"the waveform must hold numbers, not {x.dtype}")
    if x.dtype.kind in "iu":
        raise EsvaError(
            f"the waveform is {x.dtype}: give floats in [-1, 1] (e.g. x / 32768 for int16)"
        )
    if x.ndim == 2 and x.shape[0] > x.shape[1]:
        raise EsvaError(
            f"the waveform's shape {x.shape} reads as {x.shape[0]} channels of {x.shape[1]} "
            "samples: give (channels, samples), e.g. x.T"
        )
    if x.ndim not in (1, 2):
        raise EsvaError(f"the waveform must be (samples,) or (channels, samples), got {x.shape}")
    if x.size == 0:
        raise EsvaError("the waveform is empty")
    planes = np.atleast_2d(x).astype(np.float32, copy=False)
    mono = planes.mean(axis=0, dtype=np.float32)
    if not np.isfinite(mono).all():
        n = int((~np.isfinite(mono)).sum())
        raise EsvaError(f"the waveform has {n} samples that are not finite numbers")
    # One stream, as load_audio resamples (the same filter state at every sample).
    resampler = soxr.ResampleStream(rate, target_rate, 1, dtype="float32")
    samples = np.concatenate(
        [
            resampler.resample_chunk(np.ascontiguousarray(mono)),
            resampler.resample_chunk(np.zeros(0, np.float32), last=True),
        ]
    ).astype(np.float32, copy=False)
    np.clip(samples, -1.0, 1.0, out=samples)
    return AudioClip(samples=samples, sample_rate=target_rate, native_sample_rate=rate)


def frames_from_array(frames: Any, fps: int | float, start_s: float = 0.0) -> VideoFrames:
    """RGB frames ``(n, height, width, 3)`` uint8 (or a list of ``(height, width, 3)``) shown at
    ``fps`` -> :class:`VideoFrames` on a uniform clock from ``start_s``."""
    if isinstance(frames, list | tuple):
        if not frames:
            raise EsvaError("no frames given")
        shapes = {np.shape(f) for f in frames}
        if len(shapes) > 1:
            raise EsvaError(f"the frames differ in shape ({', '.join(map(str, sorted(shapes)))})")
        frames = np.stack([_as_numpy(f, "a frame") for f in frames])
    x = _as_numpy(frames, "the frames")
    rate = _rate(fps, "fps", "frames need their fps (e.g. fps=25)")
    if x.ndim != 4 or x.shape[-1] != 3:
        raise EsvaError(f"frames must be (n, height, width, 3) RGB, got shape {x.shape}")
    if x.dtype != np.uint8:
        raise EsvaError(f"frames must be uint8 RGB (0-255), got {x.dtype}")
    if len(x) == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        raise EsvaError(f"the frames are empty (shape {x.shape})")
    times = start_s + np.arange(len(x), dtype=np.float64) / rate
    return VideoFrames(frames=np.ascontiguousarray(x), timestamps_s=times)


def iter_array_frames(
    video: VideoFrames, fps: float | None = None, max_side: int | None = None
) -> Iterator[tuple[float, np.ndarray]]:
    """``(time_s, rgb)`` as :func:`esva.media.decode.iter_frames` yields them for a file: every
    frame (``fps=None``) or the frame nearest each ``first + k / fps`` up to the end of the
    last frame's display time, downscaled so that the longer side is at most ``max_side``."""
    times = np.asarray(video.timestamps_s, np.float64)
    n = len(times)
    if n == 0:
        raise EsvaError("no frames given")
    step = float(np.median(np.diff(times))) if n > 1 else 1.0 / 25.0

    def rgb(i: int) -> np.ndarray:
        frame = video.frames[i]
        if max_side is None or max(frame.shape[:2]) <= max_side:
            return frame
        import cv2

        h, w = frame.shape[:2]
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)

    if fps is None:
        for i in range(n):
            yield float(times[i]), rgb(i)
        return
    end = times[-1] + step
    k, i = 0, 0
    while (target := times[0] + k / fps) < end - 1e-9:
        while i + 1 < n and times[i + 1] <= target:
            i += 1
        # the nearer of the frame before and the one after (ties: the earlier, on screen then)
        j = i + 1 if i + 1 < n and times[i + 1] - target < target - times[i] else i
        yield float(times[j]), rgb(j)
        k += 1


# Magic numbers -> suffix (the decoders open any container; the apps tell audio from video by
# the suffix).
def sniff_suffix(data: bytes) -> str:
    """The file suffix of media ``data`` from its first bytes; a one-line error when it is
    neither a known audio nor a known video container."""
    head = bytes(data[:64])
    if len(head) < 12:
        raise EsvaError(f"the bytes are too short to be audio or video ({len(data)} bytes)")
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return ".wav"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return ".avi"
    if head[:4] == b"fLaC":
        return ".flac"
    if head[:4] == b"OggS":
        return ".opus" if b"OpusHead" in head else ".ogg"
    if head[:3] == b"ID3" or (head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06):
        return ".mp3"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return ".m4a" if brand in (b"M4A ", b"M4B ") else ".mov" if brand == b"qt  " else ".mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return ".webm" if b"webm" in bytes(data[:256]) else ".mkv"
    if head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return ".aac"  # ADTS
    if head[:3] == b"FLV":
        return ".flv"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return ".mpg"
    raise EsvaError("the bytes are not a known audio or video format (wav, flac, mp3, mp4, ...)")


__all__ = ["audio_from_array", "frames_from_array", "iter_array_frames", "sniff_suffix"]
