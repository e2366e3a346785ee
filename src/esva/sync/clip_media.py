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
