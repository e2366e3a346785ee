"""The one path from a media file to an answer: analyse the clip once, model, offset.

A model folder is loaded once (:class:`Recognizer` for an ESVA model or the pooled voice model;
``esva.apps.explain``'s ``Explainer`` for an LLM adapter), with the :class:`FeatureExtractor`
its ``extraction.json`` describes (:func:`esva.extract.provenance.extractor_for_model`). Then,
per file, :func:`esva.extract.clip.analyse_clip` makes the clip's one
:class:`~esva.extract.clip.ClipAnalysis`: the audio and the video decoded once, the encoder
streams, ONE face track (the model's own when it has a visual encoder; otherwise the clip face
track of :mod:`esva.media.track`, MTCNN on every frame, framed by ``extraction.json``'s
``face_track`` or its defaults) and the settings that made them. Everything below reads that one
object: the model its streams (:func:`esva.model.inputs.clip_frames`, straight into the model's
input tensors), the audio-video offset its audio and track (the sync space,
:func:`esva.sync.estimate.align_media`, so the offset is what ``esva align`` measures), and a
model folder with ``fusion.json`` (the shipped default) fuses its model, as the voice expert,
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

from esva.data.sources import ClipSource
from esva.errors import EsvaError
from esva.extract.clip import SHORT_CLIP_S, TRACK_CLIP, ClipAnalysis, analyse_clip
from esva.extract.pipeline import FeatureExtractor
from esva.extract.provenance import extractor_for_model
from esva.fusion.label_spaces import target_table
from esva.fusion.spec import FusionSpec, load_fusion
from esva.model import ESVAModel
from esva.model.inputs import (
    ClipFrames,
    clip_frames,
    forward_frames,
    frames_duration,
    window_frames,
)
from esva.model.pooled_voice import load_model

MIN_SYNC_FPS = 20.0  # a face track sampled below this is too coarse for lip sync: flagged
SYNC_HEADS_FLAG = "offset measured by the shipped sync heads (esva align)"

__all__ = [
    "SHORT_CLIP_S",
    "ClipAnalysis",
    "Prediction",
    "Recognizer",
    "measure_offset",
    "model_streams",
]


def measure_offset(analysis: ClipAnalysis, space=None) -> tuple[float | None, float | None]:
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
    if analysis.track_kind == TRACK_CLIP:
        flags.append(SYNC_HEADS_FLAG)
        if analysis.track_detector == "haar":
            flags.append(
                "offset measured on a haar face track: haar loses profile faces "
                "(extraction.json's face_track sets the detector)"
            )
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
    # ``esva predict --adapt`` on many files adapts to the batch with. Not in the JSON.
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

    def analyse(
        self,
        path: str | Path,
        audio: str | Path | None = None,
        *,
        source: ClipSource | None = None,
        measure_offset: bool = True,
    ) -> ClipAnalysis:
        """``path`` (or ``source``'s in-memory media, ``path`` naming it) analysed once for this
        model: its streams, and, for the offset or the fused face expert, the decoded audio and
        the clip's face track (framed as the model's ``extraction.json`` says)."""
        media = self.fusion is not None or measure_offset
        return analyse_clip(
            self.extractor,
            path,
            audio,
            source=source,
            keep_media=media,
            face_track=self.extractor.config.face_track if media else None,
            # the fused default answers a silent video from the face expert
            require_streams=self.fusion is None,
        )

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
    ) -> tuple[Prediction, ClipAnalysis]:
        """:meth:`predict` and the clip's analysis (decoded audio, encoder streams, face track),
        for callers that measure more on the same decoded media (``esva explain``)."""
        if window_s <= 0 or hop_s <= 0:
            raise EsvaError("--window and --hop must be positive")
        analysis = self.analyse(path, audio, source=source, measure_offset=measure_offset)
        return self.answer(analysis, str(path), window_s, hop_s, measure_offset), analysis

    def answer(
        self,
        analysis: ClipAnalysis,
        file: str | None = None,
        window_s: float = 2.0,
        hop_s: float = 0.5,
        measure_offset: bool = True,
    ) -> Prediction:
        """The prediction for an analysed clip (``file``: what the answer names it; default
        its path)."""
        file = str(analysis.path) if file is None else file
        if self.fusion is not None:
            return self._answer_fused(analysis, file, window_s, hop_s, measure_offset)
        model, cfg = self.model, self.model.config
        frames = clip_frames(cfg, analysis.streams)
        if not frames:
            raise EsvaError("none of the model's modalities could be extracted from the file", file)
        duration = frames_duration(cfg, frames)
        grid = None
        if duration > window_s:
            n = math.floor((duration - window_s) / hop_s) + 1
            grid = [(k * hop_s, k * hop_s + window_s) for k in range(n)]
        windows = window_frames(cfg, frames, grid) if grid is not None else []
        out = forward_frames(model, [frames])  # alone: padding never touches the clip
        probs = out.probabilities[0].numpy()
        statistics = getattr(out, "statistics", None)
        timeline = []
        if windows:
            wout = forward_frames(model, [w for _, w in windows])
            for ((t0, t1), _), p in zip(windows, wout.probabilities.numpy(), strict=True):
                timeline.append(_window(cfg.classes, t0, t1, p))
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
        return Prediction(
            file=file,
            label=cfg.classes[int(probs.argmax())],
            probabilities=dict(zip(cfg.classes, map(float, probs), strict=True)),
            offset_ms=offset_ms,
            offset_confidence=conf,
            modalities=used,
            missing=[m for m in cfg.modalities if m not in used],
            flags=analysis.flags,
            timeline=timeline,
            valence=float(out.valence[0]) if out.valence is not None else None,
            transcript=analysis.info.get("transcript"),
            model=self.name,
            # a voice-only answer to digital silence says nothing, however peaked it looks
            confident=analysis.duration_s >= SHORT_CLIP_S
            and not ("silent" in analysis.flags and used == ["audio"]),
            duration_s=round(analysis.duration_s, 3),
            face_coverage=None if coverage is None else round(coverage, 4),
            extraction=analysis.settings,
            alignment=analysis.alignment,
            voice_statistics=None if statistics is None else statistics[0].numpy(),
        )

    def _answer_fused(
        self,
        analysis: ClipAnalysis,
        file: str,
        window_s: float,
        hop_s: float,
        measure_offset: bool,
    ) -> Prediction:
        """The fused answer (:mod:`esva.apps.fused`): voice model + face expert, any subset. The
        voice model reads the clip's streams, the face expert its face track's crops."""
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
        span = analysis.span_s() or (0.0, 0.0)
        grid = window_grid(analysis.duration_s, window_s, hop_s)
        experts: dict[str, ExpertOutput] = {}
        voice_streams: list[str] = []
        voice_statistics = None
        if "voice" in spec.experts:
            frames = clip_frames(cfg, analysis.streams)
            voice_streams = [m for m in cfg.modalities if m in frames]
            if voice_streams:
                windows = window_frames(cfg, frames, grid)
                out = forward_frames(model, [frames])  # alone: padding never touches the clip
                probs = out.probabilities.numpy().astype(np.float64)
                statistics = getattr(out, "statistics", None)
                voice_statistics = None if statistics is None else statistics[0].numpy()
                wprobs = _probabilities(model, [w for _, w in windows]) if windows else probs[:0]
                share, q, q_windows = voice_presence(analysis.audio, span, grid, spec.speech_full)
                by_start = {t0: p for ((t0, _), _), p in zip(windows, wprobs, strict=True)}
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
        detector = self.extractor.config.face_track.detector
        extraction = {
            **analysis.settings,
            "fusion": {
                "face_expert": spec.face_encoder,
                "face_record": face_record,
                # the face expert reads the detected frames of the clip's face track
                # (esva.apps.fused.expert_frames), framed as extraction["face_track"] says
                "face_track": None
                if analysis.is_audio
                else f"{detector} sync track, detected frames",
                "base_weights": spec.base,
                "confidence_power": spec.confidence_power,
                "speech_full": spec.speech_full,
            },
        }
        return Prediction(
            file=file,
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
            transcript=analysis.info.get("transcript"),
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


def _probabilities(model: ESVAModel, clips: list[ClipFrames]) -> np.ndarray:
    """The model's probabilities ``(len(clips), C)`` as float64."""
    return forward_frames(model, clips).probabilities.numpy().astype(np.float64)


def _measure(analysis: ClipAnalysis, recognizer: Recognizer) -> tuple[float | None, float | None]:
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
