"""One clip analysed once: its decoded audio, its one face track and its encoder streams.

:func:`analyse_clip` turns a media file (or in-memory audio + frames, :mod:`esva.media.arrays`)
into a :class:`ClipAnalysis`: the audio decoded once (16 kHz mono, on the container clock), the
video decoded once for ONE face track (:mod:`esva.media.track`), the extractor's encoder streams
(:class:`esva.data.streams.StreamFeatures`: the objects the encoders returned, the one container
every model input is read from), and the settings that made them (``settings``: the model's
``extraction.json`` as used, and the face track's framing). Every app reads this one object: the
recogniser and its fused face expert (:mod:`esva.apps.inference`), the audio-video offset and
``esva align`` (the sync heads read ``audio`` and ``track``), ``esva explain`` (the voice cues
and the adapter's frames) and the Python API (:mod:`esva.apps.pipeline`).

Which face track a clip gets:

- the extractor has a visual encoder: the faces it tracks for its features (its recorded
  detector and fps), kept with grey face and mouth crops;
- otherwise, when asked (``face_track``: the extractor's ``ExtractConfig.face_track``, from the
  model's ``extraction.json`` or the defaults), the clip face track through every decoded frame
  (:func:`esva.media.track.track_clip_face`): what the sync heads and the face expert read.

A video is decoded once whichever it is (each stream: one :func:`esva.media.decode.load_audio`,
one :func:`~esva.media.decode.iter_frames`, no probe).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from esva.data.sources import AUDIO_SUFFIXES, ClipSource
from esva.data.streams import StreamFeatures
from esva.errors import EsvaError
from esva.extract.pipeline import ClipFeatures
from esva.extract.provenance import extraction_summary
from esva.media.track import FaceTrackSettings
from esva.media.types import AudioClip, FaceTrack

if TYPE_CHECKING:
    from esva.extract.pipeline import FeatureExtractor

SHORT_CLIP_S = 0.5  # below this, one utterance's emotion is not in the clip: flagged
COVERAGE_FPS = 50.0  # grid on which face coverage is measured (the sync space's rate)
TRACK_MODEL = "model"  # the track the extractor's visual encoders read
TRACK_CLIP = "clip"  # the clip face track (esva.media.track): the sync heads, the face expert


@dataclass
class ClipAnalysis:
    """One clip decoded and encoded once: what every model and measurement of it reads."""

    path: Path  # the file (for in-memory media: the name the answer gives)
    audio_path: Path | None  # where the sound came from (the file itself, or --audio)
    is_audio: bool  # an audio-only clip (no video to track or align)
    streams: dict[str, StreamFeatures]  # encoder name -> its feature stream
    audio: AudioClip | None = None  # the decoded audio (kept with ``keep_media``)
    track: FaceTrack | None = None  # the clip's one face track
    track_kind: str | None = None  # TRACK_MODEL | TRACK_CLIP | None
    track_source: str | None = None  # in words ("mtcnn, every frame", ...)
    track_detector: str | None = None  # haar | mtcnn
    track_fps: float | None = None  # the track's sampling rate; None: every decoded frame
    info: dict[str, Any] = field(default_factory=dict)  # transcript, durations, coverage, ...
    flags: list[str] = field(default_factory=list)
    # The settings that made it: extraction.json's as used (encoders, options and records, fps,
    # detector, ASR, sample rate) and ``face_track``, the framing of ``track`` (None: no track).
    settings: dict[str, Any] = field(default_factory=dict)
    alignment: dict[str, Any] | None = None  # C(τ), L(τ) and per-window offsets, once measured

    def span_s(self) -> tuple[float, float] | None:
        """First and last instant that the audio or the video covers (container clock)."""
        ends = []
        if self.audio is not None and len(self.audio.samples):
            ends.append((self.audio.start_s, self.audio.start_s + self.audio.duration_s))
        for s in self.streams.values():
            if s.fps > 0 and len(s.features):
                ends.append((s.start_s, s.start_s + len(s.features) / s.fps))
        if self.track is not None and len(self.track.timestamps_s):
            t = self.track.timestamps_s
            step = float(np.median(np.diff(t))) if len(t) > 1 else 0.04
            ends.append((float(t[0]), float(t[-1]) + step))
        if not ends:
            return None
        return min(a for a, _ in ends), max(b for _, b in ends)

    @property
    def duration_s(self) -> float:
        span = self.span_s()
        return 0.0 if span is None else span[1] - span[0]

    def face_coverage(self) -> float | None:
        """Share of the clip's span (audio and video together) with a tracked face; None for a
        clip without video (or without a track). Measured on a 50 Hz grid by the sync space's
        interpolation rule (:func:`esva.media.track.to_grid`)."""
        if self.is_audio or self.track is None:
            return None
        from esva.media.track import to_grid

        span = self.span_s()
        if span is None or span[1] <= span[0]:
            return 0.0
        grid = np.arange(span[0], span[1], 1.0 / COVERAGE_FPS)
        t = np.asarray(self.track.timestamps_s, np.float64)
        _, valid = to_grid(np.zeros((len(t), 1), np.float32), t, self.track.mask, grid)
        return float(valid.mean()) if len(valid) else 0.0


def clip_source(path: str | Path, audio: str | Path | None = None) -> tuple[ClipSource, bool]:
    """The :class:`ClipSource` of a raw file (and whether it is audio only, by its suffix)."""
    path = Path(path)
    if not path.exists():
        raise EsvaError("file not found", path)
    if audio is not None and not Path(audio).exists():
        raise EsvaError("file not found", audio)
    is_audio = path.suffix.lower() in AUDIO_SUFFIXES
    source = ClipSource(
        name=path.stem,
        video=None if is_audio else path,
        audio=Path(audio) if audio else (path if is_audio else None),
    )
    return source, is_audio


def analyse_clip(
    extractor: FeatureExtractor | None,
    path: str | Path,
    audio: str | Path | None = None,
    *,
    source: ClipSource | None = None,
    keep_media: bool = True,
    face_track: FaceTrackSettings | None = None,
    require_streams: bool = True,
    strict: bool = False,
) -> ClipAnalysis:
    """Decode and encode one clip once.

    ``path``: a media file (``audio``: a separate sound file for it), or, with ``source`` (a
    clip whose media are in memory), the name the answer gives. ``extractor``: the encoders to
    run (None: media only, as ``esva align`` reads them). With ``keep_media`` the decoded audio
    and the face track stay in the result; ``face_track`` (with ``keep_media``): track the face
    with these settings when the extractor has no visual encoder of its own. A clip that yields
    none of the extractor's streams is an error unless ``require_streams`` is False (the fused
    default answers a silent video from its face). ``strict`` (``esva align``): a missing sound
    or a video that cannot be read is an error, not a flag.
    """
    if source is not None:
        is_audio = source.frames is None and source.video is None
    else:
        source, is_audio = clip_source(path, audio)
    if extractor is not None:
        features = extractor.extract(source, keep_media=keep_media, require_streams=require_streams)
        settings = extraction_summary(extractor)  # extraction.json as used
        needs_sound = bool(extractor.config.audio or extractor.config.text)
        visual = bool(extractor.config.visual)
    else:
        features, settings, needs_sound, visual = ClipFeatures(streams={}), {}, False, False
    result = ClipAnalysis(
        path=Path(path),
        audio_path=source.audio or source.video,
        is_audio=is_audio,
        streams=features.streams,
        audio=features.audio,
        info=features.info,
        flags=list(features.flags),
        settings=settings,
    )
    if keep_media and not is_audio:
        if result.audio is None and not needs_sound:
            # no audio encoder decoded the sound: decoded here, once, for the offset
            result.audio = _sound(source, strict)
        if visual:
            config = extractor.config
            result.track, result.track_kind = features.track, TRACK_MODEL
            result.track_source = f"{config.faces} face track at {config.fps:g} fps"
            result.track_detector, result.track_fps = config.faces, config.fps
            result.settings["face_track"] = features.track_settings
        elif face_track is not None:
            from esva.media.track import track_clip_face

            try:
                frames = source.frames if source.frames is not None else source.video
                result.track = track_clip_face(frames, face_track)
            except EsvaError as err:
                if strict:
                    raise
                result.flags.append(f"offset not measured: {err}")
            else:
                result.track_kind, result.track_detector = TRACK_CLIP, face_track.detector
                result.track_source = f"{face_track.detector}, every frame"
                result.settings["face_track"] = face_track.record()
    result.settings.setdefault("face_track", None)
    if result.duration_s < SHORT_CLIP_S:
        result.flags.append(
            f"clip too short to label ({result.duration_s:.2f} s < {SHORT_CLIP_S} s): "
            "the probabilities are not confident"
        )
    return result


def _sound(source: ClipSource, strict: bool) -> AudioClip | None:
    """The clip's audio when no encoder decoded it (None without one; ``strict``: an error)."""
    from esva.media import decode  # looked up per call: a test counts the decodes through it

    if source.audio_clip is not None:
        return source.audio_clip if len(source.audio_clip.samples) else None
    clip = decode.load_audio(source.audio or source.video, missing_ok=not strict)
    return clip if clip is not None and len(clip.samples) else None


__all__ = [
    "COVERAGE_FPS",
    "SHORT_CLIP_S",
    "ClipAnalysis",
    "analyse_clip",
    "clip_source",
]
