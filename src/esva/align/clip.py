"""One clip, end to end: a file -> audio + face/mouth frames -> sync-space features -> τ*.

This is what ``esva align FILE`` runs:

1. **media** (:func:`load_clip_media`): the audio track (or a separate ``audio`` file, for a
   silent video with its own wav) decoded to 16 kHz mono on the container clock, and the main
   face tracked through every decoded video frame at its real timestamp, with grey face and
   mouth crops. MTCNN is the default detector: the talking-head clips this is meant for are
   often in profile, where OpenCV's frontal Haar cascade loses the face (measured on the
   ``av_sync`` clips: on a profile PC-AVS clip Haar found the face in 65-68 % of the frames,
   MTCNN in 100 %; with the tracker's region-of-interest search MTCNN took 0.5-1.3 s per
   3-6 s clip on one core, and found the face in every frame of all 36 real clips).
2. **features** (:meth:`SyncSpace.features`): log-mel audio frames and pooled mouth + face
   pixels on one 50 Hz grid (Eq. 3), projected by the shipped sync heads into one space.
3. **estimate** (:func:`esva.align.estimate_offset`): Eq. 4-6 and 8-9, sub-frame.

Decoding and face tracking dominate the cost (0.1-0.3 s per second of video on one core), so
:func:`load_clip_media` can cache its result in a directory (the benchmark and tests do; the CLI
does not). A file with no audio stream, or in which no face is found, raises a one-line
:class:`~esva.errors.EsvaError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from esva.align.offsets import OffsetEstimate, estimate_offset
from esva.align.sync_space import SyncFeatures, SyncSpace, load_sync_space
from esva.errors import EsvaError
from esva.io import atomic_path
from esva.media.decode import display_name, iter_frames, load_audio, probe
from esva.media.faces import FaceTrackerConfig, track_faces
from esva.media.types import AudioClip, FaceTrack

MEDIA_CACHE_VERSION = "1"  # bump when what load_clip_media returns changes
MIN_FACE_COVERAGE = 0.2  # below this share of frames with a face, the estimate is not trusted
SILENCE_PEAK = 1e-4  # audio whose samples never exceed this (-80 dBFS) is digital silence
# Below this confidence the peak of C(τ) is flagged: measured with held-out heads on the 36 real
# clips, in-sync clips gave 0.07-0.37 (median 0.20), the same videos with another clip's audio
# 0.03-0.35 (median 0.09); the threshold flags 2 of 36 real pairings and 22 of 36 unrelated ones.
MIN_CONFIDENCE = 0.1


@dataclass
class ClipMediaConfig:
    """How a clip is decoded and its face tracked (see :class:`FaceTrackerConfig`)."""

    detector: str = "mtcnn"  # "mtcnn" (profile-robust) or "haar" (faster, frontal only)
    min_face: float = 0.1  # smallest face side, as a fraction of the frame's shorter side
    max_side: int = 640  # frames are downscaled so their longer side is at most this
    face_size: int = 64  # grey face crops (the "face" visual features)
    mouth_size: int = 32  # grey mouth crops (the default visual features)

    def tracker(self) -> FaceTrackerConfig:
        return FaceTrackerConfig(
            detector=self.detector,
            min_face=self.min_face,
            size=self.face_size,
            grey=True,
            mouth_size=self.mouth_size,
        )


@dataclass
class ClipMedia:
    """The decoded audio and face track of one clip (both on the container clock)."""

    audio: AudioClip
    track: FaceTrack
    video_path: Path
    audio_path: Path

    @property
    def name(self) -> str:
        return self.video_path.name


def _cache_key(video: Path, audio: Path, config: ClipMediaConfig) -> str:
    """A key that changes when either file or the decoding options change."""
    parts = [MEDIA_CACHE_VERSION, json.dumps(asdict(config), sort_keys=True)]
    for path in (video, audio):
        st = path.stat()
        parts.append(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _save_media(path: Path, media: ClipMedia) -> None:
    t = media.track
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            samples=media.audio.samples,
            sample_rate=media.audio.sample_rate,
            audio_start_s=media.audio.start_s,
            crops=t.crops,
            mouths=t.mouths,
            timestamps_s=t.timestamps_s,
            mask=t.mask,
            boxes=t.boxes,
            detected=t.detected,
        )


def _load_media(path: Path, video: Path, audio: Path) -> ClipMedia:
    with np.load(path) as z:
        clip = AudioClip(
            samples=z["samples"],
            sample_rate=int(z["sample_rate"]),
            start_s=float(z["audio_start_s"]),
            source=audio,
        )
        track = FaceTrack(
            crops=z["crops"],
            timestamps_s=z["timestamps_s"],
            mask=z["mask"],
            boxes=z["boxes"],
            source=video,
            mouths=z["mouths"],
            detected=z["detected"],
        )
    return ClipMedia(clip, track, video, audio)


def load_clip_media(
    video: str | os.PathLike,
    audio: str | os.PathLike | None = None,
    config: ClipMediaConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> ClipMedia:
    """Decode ``video``'s audio (or the separate ``audio`` file) and track its main face.

    Raises :class:`EsvaError` (one line) when a file cannot be read, has no video stream, has no
    audio (and no ``audio`` file was given), or when no face is found in any frame. With
    ``cache_dir``, the result is stored there (keyed by both files' path, size and mtime and
    the config) and reused.
    """
    config = config or ClipMediaConfig()
    video = Path(video)
    audio_path = Path(audio) if audio is not None else video
    info = probe(video)  # one-line errors for missing, empty or non-media files
    if not info.has_video:
        raise EsvaError("no video stream: esva align needs a video with a face", video)
    if audio is None and not info.has_audio:
        raise EsvaError("no audio stream (a silent video? give its sound with --audio FILE)", video)
    cached = None
    if cache_dir is not None:
        cached = Path(cache_dir) / f"{video.stem}-{_cache_key(video, audio_path, config)}.npz"
        if cached.exists():
            return _load_media(cached, video, audio_path)
    clip = load_audio(audio_path)
    if clip is None or len(clip.samples) == 0:
        raise EsvaError("audio stream has no samples", display_name(audio_path))
    # MTCNN's nets are tiny: torch's intra-op threads cost more in synchronisation than they
    # gain (measured on a 3.3 s RAVDESS clip on 2 busy cores: 9 s with 1 thread, 31 s with 2),
    # so tracking runs on one thread and the caller's setting is restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        track = track_faces(iter_frames(video, max_side=config.max_side), config.tracker(), video)
    finally:
        torch.set_num_threads(threads)
    if not track.mask.any():
        raise EsvaError(
            f"no face found in any of its {len(track.mask)} frames "
            f"(detector {config.detector}; try --detector haar/mtcnn)",
            display_name(video),
        )
    media = ClipMedia(clip, track, video, audio_path)
    if cached is not None:
        _save_media(cached, media)
    return media


# ---------------------------------------------------------------------------------------------


@dataclass
class ClipAlignConfig:
    """Options of :func:`align_clip`: the search range and Eq. 4/8 geometry."""

    max_offset_ms: float = 500.0  # τ is searched in [-max, +max]
    window_s: float = 1.0  # local windows of Eq. 4
    hop_s: float = 0.5
    alpha: float = 1.0  # weight of the local distance D (Eq. 8)
    beta: float = 1.0  # weight of the global correlation C (Eq. 8)


@dataclass
class ClipAlignment:
    """The result of :func:`align_clip` (``offset_ms`` > 0: the audio lags the video)."""

    file: str
    audio_file: str
    offset_ms: float
    confidence: float
    peak_z: float
    local_offsets_ms: list[float | None]  # per window; None where the window lacks data
    window_start_s: list[float]
    window_s: float
    fps: float  # the grid the estimate was made on
    max_offset_ms: float
    face_coverage: float
    flags: list[str] = field(default_factory=list)  # reasons not to trust the result
    estimate: OffsetEstimate | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the headline numbers, the windows and the C(τ) / L(τ) curves."""
        e = self.estimate
        curves = {}
        if e is not None:
            curves = {
                "taus_ms": _clean(-1000.0 * e.taus_s),  # as audio lags
                "xcorr": _clean(e.xcorr),
                "cost": _clean(e.cost),
            }
        out = {k: v for k, v in asdict(self).items() if k != "estimate"}
        out["offset_ms"] = round(self.offset_ms, 3) if math.isfinite(self.offset_ms) else None
        return {**out, **curves}


def _clean(values: np.ndarray) -> list[float | None]:
    """Floats for JSON, None for NaN (JSON has no NaN)."""
    return [None if not math.isfinite(float(v)) else round(float(v), 6) for v in values]


def estimate_from_features(
    feats: SyncFeatures, space: SyncSpace, config: ClipAlignConfig | None = None
) -> OffsetEstimate:
    """Project ``feats`` into the sync space and run Eq. 9 on them."""
    config = config or ClipAlignConfig()
    za, zv = space.project(feats)
    return estimate_offset(
        za,
        zv,
        feats.fps,
        audio_mask=feats.audio_mask,
        visual_mask=feats.visual_mask,
        max_offset_s=config.max_offset_ms / 1000.0,
        window_s=config.window_s,
        hop_s=config.hop_s,
        alpha=config.alpha,
        beta=config.beta,
    )


def align_media(
    media: ClipMedia, space: SyncSpace | None = None, config: ClipAlignConfig | None = None
) -> ClipAlignment:
    """τ*, its confidence and the per-window offsets of decoded ``media``."""
    config = config or ClipAlignConfig()
    space = space or load_sync_space()
    feats = space.features(media.audio, media.track)
    est = estimate_from_features(feats, space, config)
    flags = []
    coverage = media.track.coverage
    samples = media.audio.samples
    silent = len(samples) == 0 or float(np.max(np.abs(samples))) < SILENCE_PEAK
    defined = est.defined and not silent
    if coverage < MIN_FACE_COVERAGE:
        flags.append(f"face found in only {100 * coverage:.0f} % of the frames")
    if silent:
        flags.append("the audio is silent: there is nothing to align")
    elif not est.defined:
        flags.append("the audio and the face never overlap in time")
    elif est.confidence < MIN_CONFIDENCE:
        flags.append("no clear peak in C(τ): little speech or lip motion, or unrelated audio")
    edge = abs(abs(est.tau_s) * 1000.0 - config.max_offset_ms) < 1000.0 / feats.fps
    if defined and edge:
        flags.append("the best offset is at the edge of the search range; raise --max-offset-ms")
    local = [
        None if silent or not math.isfinite(v) else round(-1000.0 * float(v), 3)
        for v in est.local_tau_s
    ]
    return ClipAlignment(
        file=display_name(media.video_path),
        audio_file=display_name(media.audio_path),
        offset_ms=est.audio_lag_ms if defined else float("nan"),
        confidence=round(est.confidence, 4),
        peak_z=round(est.peak_z, 4),
        local_offsets_ms=local,
        window_start_s=[round(float(s) + feats.start_s, 3) for s in est.window_start_s],
        window_s=config.window_s,
        fps=feats.fps,
        max_offset_ms=config.max_offset_ms,
        face_coverage=round(coverage, 4),
        flags=flags,
        estimate=est,
    )


def align_clip(
    video: str | os.PathLike,
    audio: str | os.PathLike | None = None,
    *,
    config: ClipAlignConfig | None = None,
    media_config: ClipMediaConfig | None = None,
    space: SyncSpace | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> ClipAlignment:
    """The whole pipeline for one file (``esva align``)."""
    media = load_clip_media(video, audio, media_config, cache_dir)
    return align_media(media, space, config)


def plot_alignment(result: ClipAlignment, out: str | os.PathLike) -> Path:
    """Two panels: C(τ) and L_align(τ) against the audio lag; local offsets over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    est = result.estimate
    if est is None:
        raise ValueError("the result carries no curves to plot")
    lags = -1000.0 * est.taus_s
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 6), constrained_layout=True)
    ax1.plot(lags, est.xcorr, label="C(τ) global correlation (Eq. 5)")
    ax1.plot(lags, -est.cost, label="−L_align(τ) = β·C − α·D (Eq. 8)", alpha=0.8)
    if math.isfinite(result.offset_ms):
        ax1.axvline(result.offset_ms, color="k", ls="--", lw=1)
    ax1.set_xlabel("audio lag (ms; > 0: audio late)")
    ax1.set_title(
        f"{Path(result.file).name}: offset {result.offset_ms:+.1f} ms, "
        f"confidence {result.confidence:.2f}"
    )
    ax1.legend(fontsize=8)
    starts = np.asarray(result.window_start_s, dtype=float)
    local = np.array([np.nan if v is None else v for v in result.local_offsets_ms], dtype=float)
    ax2.plot(starts + result.window_s / 2, local, "o-", label="local offset τ_i* (Eq. 6)")
    if math.isfinite(result.offset_ms):
        ax2.axhline(result.offset_ms, color="k", ls="--", lw=1, label="global τ*")
    ax2.set_xlabel("time (s, window centre)")
    ax2.set_ylabel("audio lag (ms)")
    ax2.legend(fontsize=8)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
    return out


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
