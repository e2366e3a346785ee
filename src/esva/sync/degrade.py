"""Known damage injected into real clips: audio delays and drift, noise bursts, blurred or
dropped face frames. The alignment benchmarks and the sync-space trainer measure against them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from esva.media.types import AudioClip, FaceTrack


def delay_audio(
    audio: AudioClip,
    lag_s: float = 0.0,
    drift_s: float = 0.0,
    delay_fn: Callable[[np.ndarray], np.ndarray] | None = None,
) -> AudioClip:
    """The same clip with its waveform delayed by ``lag_s`` (> 0: the audio lags the video).

    With ``drift_s`` the delay changes linearly over the clip, from ``lag_s - drift_s / 2`` at
    its start to ``lag_s + drift_s / 2`` at its end (a clock-rate mismatch); ``delay_fn`` maps
    times since the clip's start (s) to any delay (s) instead. The length and ``start_s`` are
    kept: samples shifted in from outside the clip are silence. Fractional-sample delays are
    linearly interpolated; a constant whole-sample delay is an exact copy. Used to inject known
    offsets into real recordings (in the waveform, before any feature is computed).
    """
    x = np.asarray(audio.samples, np.float32)
    n, rate = len(x), audio.sample_rate
    whole = lag_s * rate
    if delay_fn is None and drift_s == 0.0 and abs(whole - round(whole)) < 1e-6:
        k = round(whole)
        shifted = np.zeros_like(x)
        if 0 <= k < n:
            shifted[k:] = x[: n - k]
        elif -n < k < 0:
            shifted[:k] = x[-k:]
        return dataclasses.replace(audio, samples=shifted)
    t = np.arange(n, dtype=np.float64)
    if delay_fn is not None:
        delay = np.asarray(delay_fn(t / rate), dtype=np.float64)
    else:
        delay = lag_s + drift_s * (t / max(n - 1, 1) - 0.5)
    shifted = np.interp(t - delay * rate, t, x, left=0.0, right=0.0).astype(np.float32)
    return dataclasses.replace(audio, samples=shifted)


def random_bursts(
    duration_s: float, share: float, rng: np.random.Generator, length_s: float = 1.0
) -> list[tuple[float, float]]:
    """Non-overlapping ``length_s`` bursts covering about ``share`` of ``duration_s``."""
    slots = max(1, int(duration_s // length_s))
    chosen = rng.choice(slots, size=round(share * slots), replace=False)
    return [(float(i * length_s), float((i + 1) * length_s)) for i in sorted(chosen)]


def add_noise_bursts(
    audio: AudioClip,
    bursts: list[tuple[float, float]],
    rng: np.random.Generator,
    snr_db: tuple[float, float] = (0.0, 10.0),
) -> AudioClip:
    """White noise over each (start, end) burst (s from the clip's start) at an SNR drawn from
    ``snr_db``, relative to the RMS of the whole clip's signal."""
    x = np.array(audio.samples, np.float32)
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) or 1e-3
    for start, end in bursts:
        a, b = round(start * audio.sample_rate), round(end * audio.sample_rate)
        snr = rng.uniform(*snr_db)
        noise = rng.standard_normal(max(0, min(b, len(x)) - a)).astype(np.float32)
        x[a : a + len(noise)] += noise * rms / 10 ** (snr / 20)
    return dataclasses.replace(audio, samples=np.clip(x, -1.0, 1.0))


def degrade_track(
    track: FaceTrack,
    blurred: list[tuple[float, float]] = (),
    dropped: list[tuple[float, float]] = (),
    sigma_px: float = 2.0,
) -> FaceTrack:
    """Blur the face and mouth crops inside ``blurred`` spans (Gaussian, ``sigma_px`` on the
    mouth crop, scaled for the face crop), and freeze them inside ``dropped`` spans (a dropped
    frame shows the last frame that arrived). Times are seconds from the track's first frame."""
    import cv2

    crops, mouths = track.crops.copy(), None if track.mouths is None else track.mouths.copy()
    t = np.asarray(track.timestamps_s) - (track.timestamps_s[0] if len(track.timestamps_s) else 0)

    def inside(spans) -> np.ndarray:
        hit = np.zeros(len(t), bool)
        for start, end in spans:
            hit |= (t >= start) & (t < end)
        return hit

    def blur(img: np.ndarray, sigma: float) -> np.ndarray:
        out = cv2.GaussianBlur(img, (0, 0), sigma)
        return out.reshape(img.shape)

    face_sigma = sigma_px * (crops.shape[1] / mouths.shape[1] if mouths is not None else 1.0)
    for i in np.flatnonzero(inside(blurred)):
        crops[i] = blur(crops[i], face_sigma)
        if mouths is not None:
            mouths[i] = blur(mouths[i], sigma_px)
    for i in np.flatnonzero(inside(dropped)):
        if i > 0:
            crops[i] = crops[i - 1]
            if mouths is not None:
                mouths[i] = mouths[i - 1]
    return dataclasses.replace(track, crops=crops, mouths=mouths)
