"""A clip's audio and face track for the sync space: decoded once, optionally cached.

The audio track (or a separate ``audio`` file, for a silent video with its own wav) is decoded
to 16 kHz mono on the container clock, and the main face is tracked through every decoded video
frame at its real timestamp, with grey face and mouth crops: the clip's one
:class:`~esva.extract.clip.ClipAnalysis` without encoders (:func:`esva.extract.clip.analyse_clip`,
the face track of :mod:`esva.media.track`), so ``esva align`` and ``esva predict``'s offset read
the same media made the same way. MTCNN is the default detector (profile faces; see
:mod:`esva.media.track`); with the tracker's region-of-interest search MTCNN took 0.5-1.3 s per
3-6 s clip on one core, and found the face in every frame of all 36 real ``av_sync`` clips.

Decoding and face tracking dominate the cost (0.1-0.3 s per second of video on one core), so
:func:`load_clip_media` can cache its result in a directory (the benchmark and tests do; the CLI
does not). A file with no audio stream, or in which no face is found, raises a one-line
:class:`~esva.errors.EsvaError`.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from esva.data.sources import ClipSource
from esva.errors import EsvaError
from esva.hashing import text_sha256
from esva.io import atomic_path
from esva.media.decode import display_name, probe
from esva.media.track import FaceTrackSettings
from esva.media.types import AudioClip, FaceTrack

MEDIA_CACHE_VERSION = "1"  # bump when what load_clip_media returns changes

# How a clip is decoded and its face tracked: the clip face track's settings (esva.media.track).
ClipMediaConfig = FaceTrackSettings


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
    return text_sha256("\n".join(parts))[:24]


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
    with np.load(path, allow_pickle=False) as z:  # our own cache; never unpickle a file
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
    from esva.extract.clip import analyse_clip

    source = ClipSource(video.stem, video=video, audio=audio_path)
    analysis = analyse_clip(None, video, source=source, face_track=config, strict=True)
    clip, track = analysis.audio, analysis.track
    if clip is None:
        raise EsvaError("audio stream has no samples", display_name(audio_path))
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
# The real talking-face clips of the shared data folder (training and measuring the sync space)

# Clip groups of the shared data folder (its README.md): what each holds is in discover_av_clips.
CLIP_GROUPS = ("ravdess", "pc-avs", "video-retalking", "styletalk")


@dataclass(frozen=True)
class AVClip:
    """One real audio-video clip: the video, its separate audio (or None), where it is from."""

    video: Path
    audio: Path | None
    corpus: str
    speaker: str  # clips of one speaker go to one fold

    @property
    def name(self) -> str:
        return f"{self.corpus}/{self.video.name}"


def discover_av_clips(
    root: str | os.PathLike, groups: tuple[str, ...] = CLIP_GROUPS
) -> list[AVClip]:
    """Every full audio-video clip of the data folder ``root`` in ``groups``, in a fixed order.

    ``ravdess``: the 7 full-AV RAVDESS Actor_01 takes; ``pc-avs``: the 14 PC-AVS clips,
    ``video-retalking``: the 5 video-retalking clips (both with their own audio);
    ``styletalk``: the 10 silent StyleTalk videos with their same-name wav. Their published
    sync is the positive pairing of the sync space's self-supervision (no labels).
    """
    root = Path(root)
    unknown = [g for g in groups if g not in CLIP_GROUPS]
    if unknown:
        raise EsvaError(f"unknown clip group {unknown[0]!r} (known: {', '.join(CLIP_GROUPS)})")
    clips: list[AVClip] = []
    if "ravdess" in groups:
        clips += [
            AVClip(p, None, "ravdess", "ravdess-actor01")
            for p in sorted((root / "ravdess_av" / "Actor_01").glob("01-*.mp4"))
        ]
    if "pc-avs" in groups:
        for p in sorted((root / "av_sync" / "pc-avs").glob("*.mp4")):
            # 9-digit names share a 6-digit prefix per source video (same speaker)
            clips.append(AVClip(p, None, "pc-avs", "pc-" + p.stem[:6]))
    if "video-retalking" in groups:
        for p in sorted((root / "av_sync" / "video-retalking").glob("*.mp4")):
            clips.append(AVClip(p, None, "video-retalking", "vr-" + p.stem))
    if "styletalk" in groups:
        for p in sorted((root / "av_sync" / "styletalk").glob("*.mp4")):
            wav = p.with_suffix(".wav")
            if wav.exists():
                speaker = "st-" + re.split(r"_clip", p.stem)[0]
                clips.append(AVClip(p, wav, "styletalk", speaker))
    return clips


def assign_folds(clips: list[AVClip], k: int = 4) -> list[int]:
    """Speakers dealt round-robin to ``k`` folds (sorted, so the split is fixed)."""
    speakers = sorted({c.speaker for c in clips})
    fold = {s: i % k for i, s in enumerate(speakers)}
    return [fold[c.speaker] for c in clips]


def media_cache() -> Path:
    """Where decoded clips are cached: ``$ESVA_CACHE/align-media`` (default ``~/.cache/esva``)."""
    from esva.weights.cache import cache_dir

    return cache_dir() / "align-media"


def load_av_media(
    clips: list[AVClip], cache: bool = True, log: Callable[[str], None] | None = None
) -> list[ClipMedia]:
    """Decoded audio + face tracks of ``clips`` (cached in :func:`media_cache` with ``cache``)."""
    out = []
    for clip in clips:
        start = time.perf_counter()
        out.append(
            load_clip_media(clip.video, clip.audio, cache_dir=media_cache() if cache else None)
        )
        if log is not None:
            log(f"  {clip.name}: {time.perf_counter() - start:.1f} s")
    return out


def talking_clip(
    seed: int, duration_s: float = 6.0, fps: float = 25.0, mouth: int = 32
) -> ClipMedia:
    """A generated talking clip, in sync: noise bursts shaped by a random syllable envelope, and
    grey mouth crops whose dark centre (the open mouth) grows with the same envelope.

    For tests and smoke runs of the sync-space recipe (``data.synthetic``); the face crops are
    blank, so train such clips with ``visual: mouth``.
    """
    rng = np.random.default_rng(seed)
    sr = 16_000
    n = round(duration_s * sr)
    t = np.arange(n) / sr
    onsets = np.cumsum(rng.uniform(0.15, 0.45, size=40))
    env = np.zeros(n)
    for onset in onsets[onsets < duration_s - 0.3]:
        length = rng.uniform(0.08, 0.25)
        env += np.exp(-0.5 * ((t - onset - length / 2) / (length / 3)) ** 2)
    env = np.clip(env, 0.0, 1.0)
    carrier = rng.standard_normal(n) * 0.3 + np.sin(2 * np.pi * 150 * t)
    samples = (0.3 * env * carrier).astype(np.float32)
    frame_t = np.arange(round(duration_s * fps)) / fps
    opening = np.interp(frame_t, t, env)
    yy, xx = np.mgrid[0:mouth, 0:mouth] - (mouth - 1) / 2
    crops = np.empty((len(frame_t), mouth, mouth, 1), np.uint8)
    for k, o in enumerate(opening):
        inside = (xx / (mouth * 0.35)) ** 2 + (yy / (1 + mouth * 0.3 * o)) ** 2 <= 1
        img = np.full((mouth, mouth), 170.0) + rng.normal(0, 3, (mouth, mouth))
        img[inside] = 40.0
        crops[k, ..., 0] = np.clip(img, 0, 255).astype(np.uint8)
    track = FaceTrack(
        crops=np.zeros((len(frame_t), 8, 8, 1), np.uint8),
        timestamps_s=frame_t,
        mask=np.ones(len(frame_t), bool),
        mouths=crops,
    )
    name = Path(f"synthetic-{seed}")
    return ClipMedia(AudioClip(samples, sr), track, name, name)
