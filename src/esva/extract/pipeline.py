"""One clip's media -> its feature sequences, with the offline encoders by default.

audio  : the audio track (or a separate audio file) at 16 kHz -> each audio encoder (50 Hz)
visual : frames at ``fps`` -> the main face tracked and cropped -> the visual encoder
text   : the corpus's transcript, or when there is none the Whisper tiny.en transcript -> minilm

Everything that can be missing is allowed to be: no audio track, no face, no transcript. The
clip is then *degraded*, not failed: its manifest entry lists the flags (``no-audio``,
``no-face``, ``asr-transcript``, ...), and the model later predicts from what is there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from esva.data.sources import ClipSource
from esva.data.streams import StreamFeatures
from esva.encoders import create_encoder
from esva.encoders.base import Encoder
from esva.errors import EsvaError
from esva.media.track import FaceTrackSettings
from esva.media.types import AudioClip, FaceTrack

# The speech recogniser that writes transcripts when a text encoder has no corpus text.
ASR_MODEL = "asr-whisper-tiny"
# Encode face frames in chunks so that a long video never holds all its crops at once.
FACE_CHUNK = 512


@dataclass
class ExtractConfig:
    audio: list[str] = field(default_factory=lambda: ["whisper-tiny"])
    visual: list[str] = field(default_factory=lambda: ["fer-cnn"])
    text: list[str] = field(default_factory=list)
    fps: float = 25.0  # video sampling rate for faces
    faces: str = "haar"  # face detector: haar | mtcnn
    asr: bool = True  # transcribe speech when a text encoder is asked and the corpus has no text
    encoder_options: dict[str, dict] = field(default_factory=dict)  # per encoder name
    # The clip's face track when no visual encoder tracks faces (the sync heads' input and the
    # fused default's face expert's): extraction.json's "face_track", or these defaults.
    face_track: FaceTrackSettings = field(default_factory=FaceTrackSettings)

    @property
    def encoders(self) -> list[str]:
        return [*self.audio, *self.visual, *self.text]


@dataclass
class ClipFeatures:
    """The output of one clip: streams by encoder name, plus what the manifest records.

    An audio or text stream is the very object its encoder's ``encode`` returned; a visual
    stream is its encoder's face-track chunks joined on the sampling grid (one object per clip).
    """

    streams: dict[str, StreamFeatures]
    info: dict = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    # With ``extract(..., keep_media=True)``: the decoded audio and the whole face track (with
    # mouth crops), so that the audio-video offset is measured without decoding again.
    audio: AudioClip | None = None
    track: FaceTrack | None = None
    track_settings: dict | None = None  # how that track was framed (tracker_record)


class FeatureExtractor:
    """Loads the encoders once; ``extract(source)`` turns one clip into its feature streams."""

    def __init__(self, config: ExtractConfig, pretrained: bool = True) -> None:
        self.config = config
        opts = config.encoder_options
        self.encoders: dict[str, Encoder] = {}
        for name in config.encoders:
            enc = create_encoder(name, pretrained=pretrained, **opts.get(name, {}))
            expected = (
                "audio" if name in config.audio else "visual" if name in config.visual else "text"
            )
            if enc.modality != expected:
                raise EsvaError(f"encoder {name!r} is a {enc.modality} encoder, not {expected}")
            self.encoders[name] = enc
        self.asr = None
        if config.text and config.asr:
            self.asr = create_encoder(ASR_MODEL, pretrained=pretrained)
        self._face_config = None
        if config.visual:
            from esva.media.faces import FaceTrackerConfig

            first = self.encoders[config.visual[0]]
            self._face_config = FaceTrackerConfig(
                detector=config.faces, size=first.face_size, grey=first.face_grey
            )
        # The settings a model folder recorded (esva.extract.provenance.extractor_for_model).
        self.extraction: dict | None = None

    @property
    def records(self) -> dict[str, dict]:
        return {name: enc.record.to_dict() for name, enc in self.encoders.items()}

    def extract(
        self,
        source: ClipSource,
        keep_media: bool = False,
        mouth_size: int = 32,
        require_streams: bool = True,
    ) -> ClipFeatures:
        """The clip's feature streams; with ``keep_media`` also its decoded audio and face track
        (grey crops and ``mouth_size`` mouth crops) in ``out.audio`` / ``out.track``.

        A clip that yields no stream at all is an error, unless ``require_streams`` is False
        (a caller with other experts, e.g. the fused default's face expert on a silent video).
        """
        t0 = time.perf_counter()
        out = ClipFeatures(streams={})
        clip = self._audio(source, out) if (self.config.audio or self.config.text) else None
        if clip is not None:
            for name in self.config.audio:
                out.streams[name] = self.encoders[name].encode(clip)
            if keep_media:
                out.audio = clip
        if self.config.visual:
            self._visual(source, out, mouth_size if keep_media else None)
        if self.config.text:
            self._text(source, clip, out)
        if require_streams and not any(s.mask.any() for s in out.streams.values()):
            raise EsvaError(
                "no usable audio, face or text in the clip", source.video or source.audio
            )
        out.info["seconds"] = time.perf_counter() - t0
        return out

    # --- modalities ---------------------------------------------------------------------------
    def _audio(self, source: ClipSource, out: ClipFeatures) -> AudioClip | None:
        from esva.media.decode import load_audio

        path = source.audio or source.video
        if source.audio_clip is not None:  # in memory (esva.media.arrays): already decoded
            from dataclasses import replace

            clip = replace(source.audio_clip)  # the offset below must not touch the caller's
        elif path is None:
            out.flags.append("no-audio")
            return None
        else:
            clip = load_audio(path, missing_ok=True)
        if clip is None or len(clip.samples) == 0:
            out.flags.append("no-audio")
            return None
        clip.start_s += source.audio_offset_s
        out.info.update(
            audio_start_s=clip.start_s,
            duration_s=clip.duration_s,
            audio_rate=clip.native_sample_rate,
        )
        if clip.issues:
            out.flags.append("audio-damaged")
            out.info["audio_issues"] = list(clip.issues)
        if float(np.abs(clip.samples).max(initial=0.0)) < 1e-4:
            out.flags.append("silent")
        return clip

    def _visual(self, source: ClipSource, out: ClipFeatures, mouth_size: int | None) -> None:
        from dataclasses import replace

        from esva.media.decode import iter_frames
        from esva.media.faces import iter_faces

        if source.frames is None and source.video is None:
            out.flags.append("no-video")
            return
        rows: dict[str, list[StreamFeatures]] = {name: [] for name in self.config.visual}
        n_frames = n_faces = 0
        chunk: list = []
        keep = mouth_size is not None
        face_config = replace(self._face_config, mouth_size=mouth_size) if keep else None
        kept: dict[str, list] = {"crops": [], "mouths": [], "times": [], "mask": [], "boxes": []}

        def flush() -> None:
            nonlocal n_faces
            track = FaceTrack(
                crops=np.stack([f.crop for f in chunk]),
                timestamps_s=np.array([f.time_s for f in chunk]),
                mask=np.array([f.found for f in chunk]),
                source=source.video,
            )
            n_faces += int(track.mask.sum())
            for name in self.config.visual:
                rows[name].append(self.encoders[name].encode(track))
            if keep:
                # Grey as the sync space reads them (RGB -> grey as pooled_pixels does): a third
                # of the memory for the same offset.
                kept["crops"].append(np.stack([_grey(f.crop) for f in chunk]))
                kept["mouths"].append(np.stack([_grey(f.mouth) for f in chunk]))
                kept["times"].append(track.timestamps_s)
                kept["mask"].append(track.mask)
                kept["boxes"].append(np.stack([f.box for f in chunk]))
            chunk.clear()

        first_time = 0.0
        if source.frames is not None:  # in memory: sampled as iter_frames samples a file
            from esva.media.arrays import iter_array_frames

            frames = iter_array_frames(source.frames, fps=self.config.fps)
        else:
            # a file without a video stream yields nothing (flagged below): no probe first
            frames = iter_frames(source.video, fps=self.config.fps, missing_ok=True)
        for face in iter_faces(frames, face_config or self._face_config):
            if n_frames == 0:
                first_time = face.time_s
            chunk.append(face)
            n_frames += 1
            if len(chunk) == FACE_CHUNK:
                flush()
        if chunk:
            flush()
        if n_frames == 0:  # a file without a video stream
            out.flags.append("no-video")
            return
        coverage = n_faces / n_frames
        out.info.update(video_frames=n_frames, face_coverage=coverage)
        if keep:
            out.track = FaceTrack(
                crops=np.concatenate(kept["crops"]),
                timestamps_s=np.concatenate(kept["times"]).astype(np.float64),
                mask=np.concatenate(kept["mask"]),
                boxes=np.concatenate(kept["boxes"]),
                source=source.video,
                mouths=np.concatenate(kept["mouths"]),
            )
            from esva.media.track import tracker_record

            # the kept crops are grey (the encoders read them in their own colour, above)
            kept_config = replace(face_config, grey=True)
            out.track_settings = tracker_record(kept_config, f"sampled at {self.config.fps:g} fps")
        if n_faces == 0:
            out.flags.append("no-face")  # the visual stream is absent: not written
            return
        # iter_frames(fps=...) samples the video on a uniform grid from its first frame (each
        # sample is the decoded frame nearest its grid time), so the stream is stored on that grid.
        start = float(first_time)
        for name, parts in rows.items():
            feats = np.concatenate([p.features for p in parts])
            mask = np.concatenate([p.mask for p in parts])
            out.streams[name] = StreamFeatures(feats, self.config.fps, start, mask, parts[0].record)
        out.info["video_start_s"] = start
        if coverage < 0.5:
            out.flags.append("few-faces")

    def _text(self, source: ClipSource, clip: AudioClip | None, out: ClipFeatures) -> None:
        text = source.text
        if not text and self.asr is not None and clip is not None:
            text = self.asr.transcribe(clip).text.strip()
            out.flags.append("asr-transcript")
        out.info["transcript"] = text or ""
        if not text:
            out.flags.append("no-text")
            return
        for name in self.config.text:
            out.streams[name] = self.encoders[name].encode(text)


def _grey(crop: np.ndarray) -> np.ndarray:
    """(S, S, 1 or 3) uint8 -> (S, S, 1) grey, OpenCV's RGB weights."""
    if crop.shape[-1] == 1:
        return crop
    import cv2

    return cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[..., None]


def describe(path: Path | None) -> str:
    return str(path) if path is not None else "-"
