"""The one path from a media file to an answer: decode once, extract once, model, offset.

A model folder is loaded once (:class:`Recognizer` for an ESVA model; ``esva.apps.explain``'s
``Explainer`` for an LLM adapter), with the :class:`FeatureExtractor` its ``extraction.json``
describes (:func:`esva.extract.provenance.extractor_for_model`). Then, per file,
:func:`analyse_file` decodes the audio and the video once, runs the encoders, and keeps the
decoded audio and the face track (with mouth crops), so that the audio-video offset is measured
by the sync space (:func:`esva.sync.estimate.align_media`) on the SAME decoded streams.

A model without a visual stream (the shipped default's voice model is audio-only) has no face
track of its own: the video is then decoded once for the sync face track, with the sync tool's
defaults (MTCNN on every frame, ``esva align``), so the offset is what ``esva align`` measures.
A model folder with ``fusion.json`` (the shipped default) fuses its model, as the voice expert,
with a face expert that reads that same track's crops (:mod:`esva.apps.fused`): the answer is
in the fusion's classes, with each expert's share in ``Prediction.per_modality``.

What the data cannot support is flagged, not hidden: an offset measured on a Haar track (Haar
loses profile faces), a clip too short to label (its probabilities are marked not confident),
and the face coverage is the share of the clip's whole span (audio and video together) in which
a face was tracked, so a 10 s soundtrack over 2 s of video reports 0.2, not 1.0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from esva.data.sources import AUDIO_SUFFIXES, ClipSource
from esva.data.streams import combine
from esva.errors import EsvaError
from esva.extract.pipeline import ClipFeatures, FeatureExtractor
from esva.extract.provenance import extractor_for_model
from esva.fusion.label_spaces import target_table
from esva.fusion.spec import FusionSpec, load_fusion
from esva.media.types import AudioClip, FaceTrack
from esva.model import ESVAModel
from esva.model.inputs import collate, modality_fps
from esva.model.pooled_voice import load_model

SHORT_CLIP_S = 0.5  # below this, one utterance's emotion is not in the clip: flagged
MIN_SYNC_FPS = 20.0  # a face track sampled below this is too coarse for lip sync: flagged
COVERAGE_FPS = 50.0  # grid on which face coverage is measured (the sync space's rate)
SYNC_TRACK = "mtcnn, every frame"  # the face track esva align makes (sync tool defaults)
SYNC_HEADS_FLAG = "offset measured by the shipped sync heads (esva align)"


# ----------------------------------------------------------------------------- per file


@dataclass
class FileAnalysis:
    """One file decoded and extracted once: what the model and the offset read."""

    path: Path
    audio_path: Path | None  # where the sound came from (the file itself, or --audio)
    is_audio: bool  # an audio-only file (no video to align)
    features: ClipFeatures  # streams, info, flags, and the decoded audio / face track
    flags: list[str]
    track: FaceTrack | None = None  # the face track the offset is measured on
    track_source: str | None = None  # how that track was made ("mtcnn, every frame", ...)
    track_detector: str | None = None  # haar | mtcnn
    track_fps: float | None = None  # the track's sampling rate; None: every decoded frame
    alignment: dict[str, Any] | None = None  # C(τ), L(τ) and per-window offsets, once measured

    @property
    def audio(self) -> AudioClip | None:
        return self.features.audio

    def span_s(self) -> tuple[float, float] | None:
        """First and last instant that the audio or the video covers (container clock)."""
        ends = []
        if self.audio is not None and len(self.audio.samples):
            ends.append((self.audio.start_s, self.audio.start_s + self.audio.duration_s))
        for s in self.features.streams.values():
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
        file without video. Measured on a 50 Hz grid by the sync space's interpolation rule."""
        if self.is_audio or self.track is None:
            return None
        from esva.sync.space import to_grid  # OpenCV and the sync space: only for a video

        span = self.span_s()
        if span is None or span[1] <= span[0]:
            return 0.0
        grid = np.arange(span[0], span[1], 1.0 / COVERAGE_FPS)
        t = np.asarray(self.track.timestamps_s, np.float64)
        _, valid = to_grid(np.zeros((len(t), 1), np.float32), t, self.track.mask, grid)
        return float(valid.mean()) if len(valid) else 0.0


def file_source(path: str | Path, audio: str | Path | None = None) -> tuple[ClipSource, bool]:
    """The :class:`ClipSource` of a raw file (and whether it is audio only)."""
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


def analyse_file(
    extractor: FeatureExtractor,
    path: str | Path,
    audio: str | Path | None = None,
    keep_media: bool = True,
    sync_track: bool = True,
    require_streams: bool = True,
    source: ClipSource | None = None,
) -> FileAnalysis:
    """Decode and extract ``path`` once.

    With ``keep_media`` the decoded audio and face track stay in the result. With
    ``sync_track`` and an extractor without a visual encoder, the video is decoded once more
    (its only decoding) for the sync face track, with ``esva align``'s defaults.
    ``require_streams=False`` lets a clip without any of the extractor's streams through (the
    fused default answers a silent video from the face track). ``source``: a clip whose media
    are in memory (:mod:`esva.media.arrays`, the Python API's arrays); ``path`` then only names
    it in the result.
    """
    if source is not None:
        is_audio = source.frames is None and source.video is None
    else:
        source, is_audio = file_source(path, audio)
    features = extractor.extract(source, keep_media=keep_media, require_streams=require_streams)
    result = FileAnalysis(
        path=Path(path),
        audio_path=source.audio or source.video,
        is_audio=is_audio,
        features=features,
        flags=list(features.flags),
    )
    if keep_media and not is_audio:
        if features.audio is None and not (extractor.config.audio or extractor.config.text):
            features.audio = _load_audio(source)  # a visual-only model: the sound for the offset
        if extractor.config.visual:
            result.track = features.track
            result.track_source = (
                f"{extractor.config.faces} face track at {extractor.config.fps:g} fps"
            )
            result.track_detector, result.track_fps = extractor.config.faces, extractor.config.fps
        elif sync_track:
            from esva.sync.clip_media import track_sync_face

            try:
                frames = source.frames if source.frames is not None else source.video
                result.track = track_sync_face(frames)
                result.track_source = SYNC_TRACK
                result.track_detector = "mtcnn"
            except EsvaError as err:
                result.flags.append(f"offset not measured: {err}")
    if result.duration_s < SHORT_CLIP_S:
        result.flags.append(
            f"clip too short to label ({result.duration_s:.2f} s < {SHORT_CLIP_S} s): "
            "the probabilities are not confident"
        )
    return result


def _load_audio(source: ClipSource) -> AudioClip | None:
    from esva.media.decode import load_audio

    if source.audio_clip is not None:
        return source.audio_clip if len(source.audio_clip.samples) else None
    clip = load_audio(source.audio or source.video, missing_ok=True)
    return clip if clip is not None and len(clip.samples) else None


def measure_offset(analysis: FileAnalysis, space=None) -> tuple[float | None, float | None]:
    """Audio lag (ms, positive = audio late) and confidence from the sync space, on the decoded
    audio and face track of ``analysis``; None (with a flag saying why) when undefined."""
    from esva.sync.clip_media import ClipMedia
    from esva.sync.estimate import align_media

    flags = analysis.flags
    if analysis.is_audio or any(f.startswith("offset not measured") for f in flags):
        return None, None
    if analysis.audio is None:
        flags.append(
            "offset not measured: no audio stream (a silent video? give its sound with --audio)"
        )
        return None, None
    track = analysis.track
    if track is None or not track.mask.any():
        n = 0 if track is None else len(track.mask)
        flags.append(f"offset not measured: no face found in any of its {n} frames")
        return None, None
    media = ClipMedia(analysis.audio, track, analysis.path, analysis.audio_path or analysis.path)
    result = align_media(media, space)
    flags.extend(result.flags)
    curves = result.to_dict()
    keys = ("offset_ms", "confidence", "taus_ms", "xcorr", "local_offsets_ms", "window_start_s")
    analysis.alignment = {k: curves.get(k) for k in (*keys, "window_s")}
    if not math.isfinite(result.offset_ms):
        return None, None
    if analysis.track_source == SYNC_TRACK:
        flags.append(SYNC_HEADS_FLAG)
        return float(result.offset_ms), float(result.confidence)
    flags.append(
        f"offset measured by the shipped sync heads on the model's {analysis.track_source}"
    )
    if analysis.track_detector == "haar":
        flags.append(
            "offset measured on a haar face track: haar loses profile faces (extract with "
            "--faces mtcnn for talking heads in profile)"
        )
    if analysis.track_fps is not None and analysis.track_fps < MIN_SYNC_FPS:
        flags.append(
            f"offset measured on a {analysis.track_fps:g} fps face track: the sync heads read "
            f"every frame (25-30 fps); below {MIN_SYNC_FPS:g} fps lip motion is undersampled"
        )
    return float(result.offset_ms), float(result.confidence)


# ----------------------------------------------------------------------------- ESVA models


@dataclass
class Prediction:
    file: str
    label: str
    probabilities: dict[str, float]
    offset_ms: float | None  # audio lag behind the video (positive = audio late); None w/o both
    offset_confidence: float | None
    modalities: list[str]  # streams the prediction used
    missing: list[str]  # modalities the model knows but the file did not give
    flags: list[str]  # extraction flags (no-face, silent, asr-transcript, ...)
    timeline: list[dict] = field(default_factory=list)  # per window: start_s, end_s, label, probs
    valence: float | None = None
    transcript: str | None = None
    model: str = ""
    # False when the clip is too short to label, or (a fused model with a calibrated rule)
    # when the top probability is below fusion.json's confidence_threshold ("uncertain" flag)
    confident: bool = True
    duration_s: float = 0.0
    face_coverage: float | None = None  # share of the clip's span with a tracked face
    extraction: dict[str, Any] = field(default_factory=dict)  # the settings used
    # The sync space's C(τ) curve and per-window offsets, when it measured the offset.
    alignment: dict[str, Any] | None = None
    # Fused models (a folder with fusion.json, e.g. the shipped default): each expert's
    # distribution over the output classes, its fusion weight, presence and confidence
    # ({"voice": {...}, "face": {..., "raw": 8-class, "peak_time_s", "coverage"}}); None for a
    # plain ESVA model.
    per_modality: dict[str, dict[str, Any]] | None = None
    peak_face_time_s: float | None = None  # the face expert's most expressive frame
    # The voice model's pooled statistics of the whole clip (a pooled voice model only): what
    # ``esva predict`` on many files adapts to the batch with. Not part of the answer's JSON.
    voice_statistics: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        out = asdict(replace(self, voice_statistics=None))
        del out["voice_statistics"]
        return out


def model_streams(model: ESVAModel) -> dict[str, str]:
    """``{modality: folder spec}`` an ESVA model reads (``config.encoders``)."""
    specs = model.config.encoders or {}
    for modality in model.config.modalities:
        if not specs.get(modality):
            raise EsvaError(f"the model does not record which encoder made its {modality} features")
    return {m: specs[m] for m in model.config.modalities}


def extraction_summary(extractor: FeatureExtractor) -> dict[str, Any]:
    """The settings an extractor runs with, for reports (``esva predict --json``)."""
    e = dict(extractor.extraction or {})
    return {
        "encoders": {
            name: {
                "modality": (e.get("encoders", {}).get(name) or {}).get("modality"),
                "options": extractor.config.encoder_options.get(name, {}),
                "record": rec,
            }
            for name, rec in extractor.records.items()
        },
        "fps": e.get("fps"),
        "faces": e.get("faces"),
        "asr": bool(e.get("asr")),
        "asr_model": e.get("asr_model"),
        "sample_rate": e.get("sample_rate"),
        "assumed_default": bool(e.get("assumed_default", False)),
    }


class Recognizer:
    """An ESVA model and its extractor, loaded once; ``predict(path)`` per file."""

    def __init__(
        self,
        model: ESVAModel,
        extractor: FeatureExtractor,
        name: str = "",
        space=None,
        fusion: FusionSpec | None = None,
    ) -> None:
        self.model = model.eval()
        self.extractor = extractor
        self.name = name
        self._space = space
        # With fusion settings (fusion.json) the model is the voice expert of a fused answer.
        self.fusion = fusion
        self._face_expert = None
        if fusion is not None:
            mods = model.config.modalities
            if "voice" in fusion.experts and ("audio" not in mods or "visual" in mods):
                # the face is the face expert's: a voice model reads audio (and text, if any)
                raise EsvaError(
                    "fusion.json's voice expert must read audio and no video, this model reads "
                    f"{'+'.join(mods)}",
                    name or None,
                )
            target_table(model.config.classes, fusion.classes)  # a missing table fails here

    @property
    def classes(self) -> list[str]:
        """The classes of the answers: the fusion's output space, or the model's own."""
        if self.fusion is not None:
            return list(self.fusion.classes)
        return list(self.model.config.classes)

    @property
    def face_expert(self):
        """The fusion's face-expression encoder, loaded on first use and kept."""
        if self._face_expert is None:
            from esva.encoders import create_encoder

            self._face_expert = create_encoder(self.fusion.face_encoder)
        return self._face_expert

    @classmethod
    def from_pretrained(
        cls, directory: str | Path | None = None, *, assume_default_extraction: bool = False
    ) -> Recognizer:
        """The model in ``directory`` (None: the shipped default, hash-checked)."""
        if directory is None:
            from esva.assets import default_model_dir

            directory, name = default_model_dir(), "default (esva/assets/default_model)"
        else:
            name = str(directory)
        model = load_model(directory)  # an ESVA model, or the pooled voice model
        extractor = extractor_for_model(
            directory, model_streams(model), assume_default=assume_default_extraction
        )
        return cls(model, extractor, name, fusion=load_fusion(directory))

    @property
    def space(self):
        """The shipped sync space, loaded on first use and kept."""
        if self._space is None:
            from esva.sync.space import load_sync_space

            self._space = load_sync_space()
        return self._space

    def predict(
        self,
        path: str | Path,
        audio: str | Path | None = None,
        window_s: float = 2.0,
        hop_s: float = 0.5,
        measure_offset: bool = True,
        source: ClipSource | None = None,
    ) -> Prediction:
        """Emotion, probabilities, a windowed timeline and the audio lag of one media file
        (or of ``source``'s in-memory media, ``path`` naming it).

        The offset comes from the model's own alignment module when it reads both audio and
        video; otherwise from the shipped sync space on the same decoded audio and face track.
        """
        return self.predict_with_analysis(path, audio, window_s, hop_s, measure_offset, source)[0]

    def predict_with_analysis(
        self,
        path: str | Path,
        audio: str | Path | None = None,
        window_s: float = 2.0,
        hop_s: float = 0.5,
        measure_offset: bool = True,
        source: ClipSource | None = None,
    ) -> tuple[Prediction, FileAnalysis]:
        """:meth:`predict` and the file's analysis (decoded audio, encoder streams, face track),
        for callers that measure more on the same decoded media (``esva explain``)."""
        if window_s <= 0 or hop_s <= 0:
            raise EsvaError("--window and --hop must be positive")
        if self.fusion is not None:
            return self._predict_fused(path, audio, window_s, hop_s, measure_offset, source)
        model, cfg = self.model, self.model.config
        analysis = analyse_file(
            self.extractor,
            path,
            audio,
            keep_media=measure_offset,
            sync_track=measure_offset,
            source=source,
        )
        features = analysis.features
        item, windows, duration = _items(model, features.streams, window_s, hop_s)
        if not any(m in item for m in cfg.modalities):
            raise EsvaError("none of the model's modalities could be extracted from the file", path)
        with torch.no_grad():
            out = model({k: v for k, v in collate([item], cfg.modalities).items() if k != "name"})
            probs = out.probabilities[0].numpy()
            statistics = getattr(out, "statistics", None)
            timeline = []
            if windows:
                batch = collate(windows, cfg.modalities)
                wout = model({k: v for k, v in batch.items() if k != "name"})
                for win, p in zip(windows, wout.probabilities.numpy(), strict=True):
                    timeline.append(_window(cfg.classes, win["start_s"], win["end_s"], p))
            else:
                timeline.append(_window(cfg.classes, 0.0, duration, probs))
        used = [s for s, p in out.present.items() if bool(p[0])]
        offset_ms = conf = None
        if out.tau_frames is not None and "joint" in used:
            offset_ms = float(-1000.0 * out.tau_frames[0] / cfg.align_fps)
            conf = float(out.offset_confidence[0])
        elif measure_offset and not analysis.is_audio:
            offset_ms, conf = _measure(analysis, self)
        coverage = analysis.face_coverage()
        prediction = Prediction(
            file=str(path),
            label=cfg.classes[int(probs.argmax())],
            probabilities=dict(zip(cfg.classes, map(float, probs), strict=True)),
            offset_ms=offset_ms,
            offset_confidence=conf,
            modalities=used,
            missing=[m for m in cfg.modalities if m not in used],
            flags=analysis.flags,
            timeline=timeline,
            valence=float(out.valence[0]) if out.valence is not None else None,
            transcript=features.info.get("transcript"),
            model=self.name,
            confident=analysis.duration_s >= SHORT_CLIP_S,
            duration_s=round(analysis.duration_s, 3),
            face_coverage=None if coverage is None else round(coverage, 4),
            extraction=extraction_summary(self.extractor),
            alignment=analysis.alignment,
            voice_statistics=None if statistics is None else statistics[0].numpy(),
        )
        return prediction, analysis

    def _predict_fused(
        self,
        path: str | Path,
        audio: str | Path | None,
        window_s: float,
        hop_s: float,
        measure_offset: bool,
        source: ClipSource | None = None,
    ) -> tuple[Prediction, FileAnalysis]:
        """The fused answer (:mod:`esva.apps.fused`): voice model + face expert, any subset."""
        from esva.apps.fused import (
            FACE_ONLY_NO_AUDIO,
            FACE_ONLY_NO_SPEECH,
            MODALITY_OF,
            VOICE_ONLY_NO_FACE,
            ExpertOutput,
            calibrated_confidence,
            face_expert_output,
            fuse,
            voice_presence,
            window_grid,
        )

        spec, model, cfg = self.fusion, self.model, self.model.config
        # The decoded audio (for the VAD) and the MTCNN track (for the face expert and the
        # offset) are always kept: the face expert reads that track's crops, no second decode.
        analysis = analyse_file(
            self.extractor,
            path,
            audio,
            keep_media=True,
            sync_track=True,
            require_streams=False,
            source=source,
        )
        span = analysis.span_s() or (0.0, 0.0)
        grid = window_grid(analysis.duration_s, window_s, hop_s)
        experts: dict[str, ExpertOutput] = {}
        voice_streams: list[str] = []
        voice_statistics = None
        if "voice" in spec.experts:
            item, windows, _ = _items(model, analysis.features.streams, window_s, hop_s, grid)
            voice_streams = [m for m in cfg.modalities if m in item]
            if voice_streams:
                # alone: padding never touches the clip
                probs, voice_statistics = _run_clip(model, item)
                wprobs = _run_model(model, windows) if windows else probs[:0]
                share, q, q_windows = voice_presence(analysis.audio, span, grid, spec.speech_full)
                by_start = {w["start_s"]: p for w, p in zip(windows, wprobs, strict=True)}
                uniform = np.full(len(cfg.classes), 1.0 / len(cfg.classes))
                experts["voice"] = ExpertOutput(
                    classes=list(cfg.classes),
                    probs=probs[0],
                    presence=q,
                    windows=[
                        (by_start[t0], qw) if t0 in by_start else (uniform, 0.0)
                        for (t0, _), qw in zip(grid, q_windows, strict=True)
                    ],
                    info={"speech_share": round(share, 4)},
                )
        coverage = analysis.face_coverage()
        if "face" in spec.experts and not analysis.is_audio:
            face = face_expert_output(
                self.face_expert, analysis.track, coverage or 0.0, span[0], grid
            )
            if face is not None:
                experts["face"] = face
        if not experts:  # said here, where the file is known (fuse() sees only the experts)
            raise EsvaError("no usable audio, face or text in the clip", analysis.path)
        fused = fuse(spec, experts, grid)
        flags = analysis.flags
        if not analysis.is_audio:
            if "voice" not in experts and analysis.audio is None:
                flags.append(FACE_ONLY_NO_AUDIO)
            elif "face" in fused.used and "voice" not in fused.used:
                flags.append(FACE_ONLY_NO_SPEECH)
            elif "face" not in experts and "voice" in fused.used:
                flags.append(VOICE_ONLY_NO_FACE)
        flags.extend(fused.flags)
        calibrated, uncertain = calibrated_confidence(fused.probabilities, spec)
        if uncertain is not None and fused.confident:
            flags.append(uncertain)
        offset_ms = conf = None
        if measure_offset and not analysis.is_audio:
            offset_ms, conf = _measure(analysis, self)
        # the voice expert's own streams (audio, and text when the model reads a transcript)
        used = [
            m for n in fused.used for m in (voice_streams if n == "voice" else [MODALITY_OF[n]])
        ]
        classes = list(spec.classes)
        face_record = self._face_expert.record.to_dict() if "face" in experts else None
        extraction = extraction_summary(self.extractor)
        extraction["fusion"] = {
            "face_expert": spec.face_encoder,
            "face_record": face_record,
            "face_track": None if analysis.is_audio else "mtcnn sync track, detected frames",
            "base_weights": spec.base,
            "confidence_power": spec.confidence_power,
            "speech_full": spec.speech_full,
        }
        prediction = Prediction(
            file=str(path),
            label=classes[int(fused.probabilities.argmax())],
            probabilities=dict(zip(classes, map(float, fused.probabilities), strict=True)),
            offset_ms=offset_ms,
            offset_confidence=conf,
            modalities=used,
            # an audio file was never going to show a face: only a video can miss one
            missing=[
                MODALITY_OF[n]
                for n in spec.experts
                if n not in fused.used and not (n == "face" and analysis.is_audio)
            ],
            flags=flags,
            timeline=fused.timeline,
            valence=None,
            transcript=analysis.features.info.get("transcript"),
            model=self.name,
            confident=analysis.duration_s >= SHORT_CLIP_S and fused.confident and calibrated,
            duration_s=round(analysis.duration_s, 3),
            face_coverage=None if coverage is None else round(coverage, 4),
            extraction=extraction,
            alignment=analysis.alignment,
            per_modality=fused.per_modality,
            peak_face_time_s=fused.peak_face_time_s,
            voice_statistics=voice_statistics,
        )
        return prediction, analysis


def _run_clip(model: ESVAModel, item: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """One whole clip: probabilities ``(1, C)`` and, from a pooled voice model, its pooled
    statistics ``(F,)`` (None from an ESVA model)."""
    with torch.no_grad():
        batch = collate([item], model.config.modalities)
        out = model({k: v for k, v in batch.items() if k != "name"})
    statistics = getattr(out, "statistics", None)
    return (
        out.probabilities.numpy().astype(np.float64),
        None if statistics is None else statistics[0].numpy(),
    )


def _run_model(model: ESVAModel, items: list[dict]) -> np.ndarray:
    """The model's probabilities ``(len(items), C)`` for already built items."""
    with torch.no_grad():
        batch = collate(items, model.config.modalities)
        out = model({k: v for k, v in batch.items() if k != "name"})
    return out.probabilities.numpy().astype(np.float64)


def _measure(analysis: FileAnalysis, recognizer: Recognizer) -> tuple[float | None, float | None]:
    try:
        space = recognizer.space
    except EsvaError as err:
        analysis.flags.append(f"offset not measured: {err}")
        return None, None
    return measure_offset(analysis, space)


def _window(classes: list[str], t0: float, t1: float, p: np.ndarray) -> dict:
    return {
        "start_s": t0,
        "end_s": t1,
        "label": classes[int(p.argmax())],
        "probabilities": dict(zip(classes, map(float, p), strict=True)),
    }


def _items(
    model: ESVAModel,
    streams: dict,
    window_s: float,
    hop_s: float,
    grid: list[tuple[float, float]] | None = None,
) -> tuple[dict, list, float]:
    """The whole-clip item and the sliding-window items for the timeline (``grid``: the
    windows to use, clip-relative seconds; default: windows over the model's streams)."""
    cfg = model.config
    specs = cfg.encoders
    item: dict = {"name": "clip", "label": -1, "valence": None}
    for modality in cfg.modalities:
        names = specs[modality].split("+")
        if all(n in streams for n in names):
            x, m = combine([streams[n] for n in names], modality_fps(cfg, modality))
            if m.any():
                item[modality], item[f"{modality}_mask"] = x, m
    durations = [len(item[m]) / modality_fps(cfg, m) for m in ("audio", "visual") if m in item]
    duration = max(durations, default=0.0)
    windows = []
    if grid is None and duration > window_s:
        n = math.floor((duration - window_s) / hop_s) + 1
        grid = [(k * hop_s, k * hop_s + window_s) for k in range(n)]
    if grid is not None:
        for k, (t0, t1) in enumerate(grid):
            win = {"name": f"w{k}", "label": -1, "valence": None, "start_s": t0, "end_s": t1}
            for m in cfg.modalities:
                if m not in item:
                    continue
                fps = modality_fps(cfg, m)
                if fps:
                    a, b = round(t0 * fps), round(t1 * fps)
                    x, mk = item[m][a:b], item[f"{m}_mask"][a:b]
                    if len(x) == 0 or not mk.any():
                        continue
                    win[m], win[f"{m}_mask"] = x, mk
                else:
                    win[m], win[f"{m}_mask"] = item[m], item[f"{m}_mask"]
            if any(m in win for m in cfg.modalities):
                windows.append(win)
    return item, windows, duration
