"""``esva explain``: one media file -> label, measured cues and an explanation in words.

Out of the box (:class:`CueExplainer`, no flags): the label and probabilities come from the
default recogniser (:meth:`esva.apps.inference.Recognizer.from_pretrained`), the cues are
measured (the voice's pitch, loudness, pace and melody against the shipped voice reference with
stated margins; the face expert's expressions over time and its peak frame when the prediction
carries them; the transcript), and the offline base LM (SmolLM2-135M-Instruct, untuned) writes
the reasoning from those cues as text. :mod:`esva.llm.conclude` force-decodes the conclusion
"Therefore, the emotion is <label>." and never ships a sentence that
:func:`esva.llm.cues.check_sentence` finds unsupported.

With ``--model DIR`` (an adapter from ``esva train-llm``): the adapter and the extractor its
folder's ``extraction.json`` describes are loaded once (:class:`Explainer`); per file the media is
decoded and extracted once, the LM streams are built as in training
(:func:`esva.llm.data.lm_features`), and the speech is transcribed from the same decoded audio
when the model was trained with subtitles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from esva.data.sources import AUDIO_SUFFIXES
from esva.errors import EsvaError
from esva.extract.clip import SHORT_CLIP_S, analyse_clip
from esva.extract.provenance import extractor_for_model
from esva.tasks import EXPLAIN_TASKS, TASK_MODALITIES, check_task

if TYPE_CHECKING:  # the recogniser's answer, read as that object (no torch at import)
    from esva.apps.inference import Prediction
    from esva.data.streams import StreamFeatures


class Explainer:
    """An LLM adapter and its extractor, loaded once; ``explain(path)`` per file."""

    def __init__(self, model, meta: dict[str, Any], extractor, directory: Path, asr: bool):
        self.model, self.meta, self.extractor = model, meta, extractor
        self.directory, self.asr = Path(directory), asr
        self._transcriber = None

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, *, asr: bool = True, assume_default_extraction: bool = False
    ) -> Explainer:
        from esva.llm.trained import load_trained

        model, meta = load_trained(directory)
        extractor = extractor_for_model(
            directory, meta["streams"], assume_default=assume_default_extraction, asr=asr
        )
        return cls(model, meta, extractor, Path(directory), asr)

    def _transcribe(self, analysis) -> str | None:
        """Whisper tiny.en on the already decoded audio (the prompt's subtitle)."""
        from esva.encoders import create_encoder
        from esva.extract.pipeline import ASR_MODEL

        clip = analysis.audio
        if clip is None or not len(clip.samples):
            return None
        if self._transcriber is None:
            self._transcriber = create_encoder(ASR_MODEL)
        return self._transcriber.transcribe(clip).text.strip() or None

    def explain(
        self,
        path: str | Path,
        audio: str | Path | None = None,
        max_new_tokens: int | None = None,
        source=None,
    ) -> dict[str, Any]:
        """``source``: a clip with in-memory media (the Python API), ``path`` naming it."""
        from esva.llm.data import lm_features
        from esva.llm.measure import face_cues, voice_cues
        from esva.llm.parse import label_last_word, label_strict

        meta, model = self.meta, self.model
        # The decoded audio is kept for the subtitle; no clip face track (no offset here).
        analysis = analyse_clip(self.extractor, path, audio, source=source, keep_media=True)
        features = lm_features(analysis.streams, meta)
        if not features:
            raise EsvaError(
                "none of the model's feature streams could be extracted from the file", path
            )
        transcript = analysis.info.get("transcript") or None
        if transcript is None and meta.get("subtitles") and self.asr:
            if analysis.audio is None and analysis.is_audio and analysis.audio_path is not None:
                # an audio file read by no audio encoder: its only decode
                from esva.media.decode import load_audio

                analysis.audio = load_audio(analysis.audio_path, missing_ok=True)
            transcript = self._transcribe(analysis)
        classes = list(meta["classes"])
        sentences = [transcript if meta.get("subtitles") else None]
        recognition = model.generate(
            features, model.prompts("recognition", features, sentences, classes), max_new_tokens=8
        )[0]
        explanation = model.generate(
            features,
            model.prompts("reasoning", features, sentences, classes),
            max_new_tokens=max_new_tokens,
        )[0]
        label = label_strict(recognition, classes)
        from_explanation = label_strict(explanation, classes)
        # Measured cues beside the LM's words, when the model's encoders give them (no speaker
        # baseline here: absolute values).
        cues: dict[str, Any] = {}
        voice, face = analysis.streams.get("prosody"), analysis.streams.get("fer-cnn")
        if voice is not None and (v := voice_cues(voice.features, voice.mask, voice.fps)):
            cues["voice"] = {k: val for k, val in vars(v).items() if val is not None}
        if face is not None and (f := face_cues(face.features, face.mask, face.fps, face.start_s)):
            cues["face"] = vars(f)
        flags = list(analysis.flags)
        if label and from_explanation and label != from_explanation:
            # Two prompts, two answers: say so rather than hide the disagreement.
            flags.append(
                f"the explanation concludes {from_explanation!r}, the recognition {label!r}"
            )
        return {
            "file": str(path),
            # The recognition answer decides; an unparseable one falls back to the explanation's
            # conclusion, then to Emotion-LLaMA's last-word rule.
            "label": label
            or from_explanation
            or label_last_word(
                recognition, classes, "neutral" if "neutral" in classes else classes[0]
            ),
            "explanation": explanation,
            "recognition_answer": recognition,
            "label_from_explanation": from_explanation,
            "classes": classes,
            "streams": sorted(features),
            "transcript": transcript,
            "flags": flags,
            "cues": cues,
            "confident": analysis.duration_s >= SHORT_CLIP_S,
            "extraction": analysis.settings,
            "model": str(self.directory),
        }


def explain_file(
    path: str | Path,
    model_dir: str | Path,
    audio: str | Path | None = None,
    max_new_tokens: int | None = None,
    asr: bool = True,
    assume_default_extraction: bool = False,
) -> dict[str, Any]:
    """Label and explanation of one media file by a model from ``esva train-llm``. To explain
    many files, load once: ``Explainer.from_pretrained(dir)`` then ``.explain(path)``."""
    explainer = Explainer.from_pretrained(
        model_dir, asr=asr, assume_default_extraction=assume_default_extraction
    )
    return explainer.explain(path, audio=audio, max_new_tokens=max_new_tokens)


# ----------------------------------------------------------------------------- out of the box

# One task vocabulary for the CLI, the server and the Python API (esva.tasks).
TASKS = EXPLAIN_TASKS


def load_voice_reference() -> dict[str, dict[str, float]]:
    """Per-register medians (``male`` / ``female``) of the shipped voice reference."""
    import json

    from esva.assets import voice_reference_path

    return json.loads(voice_reference_path().read_text(encoding="utf-8"))["registers"]


def relate_voice(v, registers: dict[str, dict[str, float]]):
    """(voice cues against the register nearer the clip's pitch, the reference's name).

    ``v`` is :class:`esva.llm.measure.VoiceCues`; the register is the one whose median F0
    is nearer in semitones (a clip has no speaker baseline; the register is named in the
    result so a reader sees what "higher" is relative to).
    """
    import math

    from esva.llm.cues import (
        LOUDNESS_MARGIN_DB,
        PITCH_MARGIN_ST,
        RANGE_MARGIN,
        RATE_MARGIN,
        VoiceCue,
        direction,
    )

    if v.f0_hz:
        register = min(registers, key=lambda r: abs(math.log2(v.f0_hz / registers[r]["f0_hz"])))
    else:
        register = "female" if "female" in registers else next(iter(registers))
    ref = registers[register]
    cues = []
    if v.f0_hz:
        st = 12 * math.log2(v.f0_hz / ref["f0_hz"])
        cues.append(
            VoiceCue(
                "pitch", v.f0_hz, ref["f0_hz"], "Hz", st, PITCH_MARGIN_ST,
                direction(st, PITCH_MARGIN_ST),
            )
        )  # fmt: skip
    db = v.loudness_db - ref["loudness_db"]
    cues.append(
        VoiceCue(
            "loudness", v.loudness_db, ref["loudness_db"], "dBFS", db, LOUDNESS_MARGIN_DB,
            direction(db, LOUDNESS_MARGIN_DB),
        )
    )  # fmt: skip
    # Pace and melody are compared as ratios to the reference (a margin of x1.15 / x1.25).
    for name, value, key, unit, margin in (
        ("pace", v.rate_per_s, "rate_per_s", "syllables/s", RATE_MARGIN),
        ("melody", v.f0_range_st, "f0_range_st", "semitones", RANGE_MARGIN),
    ):
        if value is not None and ref[key] > 0:
            ratio = value / ref[key]
            cues.append(
                VoiceCue(name, value, ref[key], unit, ratio, margin, direction(ratio, margin, True))
            )
    name = f"the median neutral RAVDESS {register}-register voice"
    return cues, name


def face_expert(prediction: Prediction) -> dict[str, Any] | None:
    """The face expert's entry of a fused prediction (``per_modality["face"]``, as
    :func:`esva.apps.fused.fuse` writes it) when the expert saw a face; None otherwise (a plain
    model's prediction has no ``per_modality``, an audio file no face expert)."""
    if prediction.per_modality is None or "face" not in prediction.per_modality:
        return None
    face = prediction.per_modality["face"]
    return face if float(face["presence"]) > 0 else None


def face_from_prediction(prediction: Prediction):
    """The face expert's track from a :class:`Prediction` when it carries one (the fused
    default's ``per_modality``); None otherwise."""
    from esva.llm.cues import FaceTrackCue

    face = face_expert(prediction)
    if face is None:
        return None
    # The output classes, as the per-window distributions (``raw`` is the expert's own set).
    windows = [
        {"start_s": w["start_s"], "end_s": w["end_s"],
         "probabilities": w["per_modality"]["face"]["probabilities"]}
        for w in prediction.timeline
        if "face" in w["per_modality"]
    ]  # fmt: skip
    peak = prediction.peak_face_time_s
    return FaceTrackCue(
        probabilities={k: float(v) for k, v in face["probabilities"].items()},
        windows=windows,
        peak_time_s=None if peak is None else float(peak),
        coverage=face["coverage"],
    )


# esva explain's own transcripts: multilingual, with language detection (see _transcribe).
EXPLAIN_ASR_MODEL = "asr-whisper-base"

# Past this length the explanation is read per timeline window (one line per run of windows
# with one label) with a one-line summary: one paragraph over minutes of cues reads as salad.
LONG_CLIP_S = 20.0
MAX_SEGMENT_LINES = 12


def segment_summary(timeline: list[dict], duration_s: float) -> tuple[list[dict], str]:
    """(segments, text): the recogniser's windows merged into runs of one label, and a short
    summary naming the label that covers most of the clip and each run's span."""
    segments: list[dict] = []
    for w in timeline:
        start, end, label = float(w["start_s"]), float(w["end_s"]), str(w["label"])
        if segments and segments[-1]["label"] == label and start <= segments[-1]["end_s"] + 1e-6:
            segments[-1]["end_s"] = max(segments[-1]["end_s"], end)
            segments[-1]["windows"] += 1
        else:
            segments.append({"start_s": start, "end_s": end, "label": label, "windows": 1})
    cover: dict[str, float] = {}
    for seg in segments:
        cover[seg["label"]] = cover.get(seg["label"], 0.0) + seg["end_s"] - seg["start_s"]
    main = max(cover, key=cover.get)
    lines = [f"{seg['start_s']:.0f}-{seg['end_s']:.0f} s {seg['label']}" for seg in segments]
    more = len(lines) - MAX_SEGMENT_LINES
    shown = lines[:MAX_SEGMENT_LINES] + ([f"and {more} more"] if more > 0 else [])
    text = (
        f"A {duration_s:.0f} s clip read in {len(timeline)} windows: mostly {main} "
        f"({cover[main]:.0f} s). By segment: {'; '.join(shown)}."
    )
    return segments, text


def llm_name(backbone: str, adapter: Any = None) -> str:
    """The language model by name, never by the folder it is installed in."""
    if adapter is not None:
        from esva.assets import explain_adapter_dir

        if Path(backbone).resolve() == explain_adapter_dir(verify=False).resolve():
            return "esva explanation adapter (SmolLM2-135M-Instruct + LoRA)"
        return f"explanation adapter {Path(backbone).name} (SmolLM2-135M-Instruct + LoRA)"
    return Path(backbone).name if ("/" in backbone or "\\" in backbone) else backbone


def recogniser_weights(prediction: Prediction) -> str | None:
    """sha256 of the shipped voice model's weights when ``prediction`` came from the shipped
    default (hash-checked at load); None for a model folder of the user's own."""
    from esva.assets import DEFAULT_MODEL_SHA256

    if prediction.model.startswith("default"):
        return DEFAULT_MODEL_SHA256["model.safetensors"]
    return None


VOICE_FRAMES = "whisper-tiny"  # the default recogniser's stream the adapter's voice token reads
VOICE_LAYER = 2  # the Whisper tiny.en hidden state the adapter's voice token was trained on
VOICE_DIM = 384


def adapter_voice_frames(stream: StreamFeatures) -> np.ndarray | None:
    """The adapter's voice-token input from the recogniser's Whisper tiny.en stream: hidden
    state 2's frames, taken out of a ``layer="stack"`` stream (the pooled voice model reads
    every hidden state side by side); None for a stream of another layer. Every frame, pauses
    too, as the adapter was trained: the mask of a ``speech_only`` stream is for pooling."""
    layer = str(stream.record_dict().get("layer", VOICE_LAYER))
    x = stream.features
    if layer == "stack" and x.shape[1] % VOICE_DIM == 0 and x.shape[1] > VOICE_DIM:
        return x[:, VOICE_LAYER * VOICE_DIM : (VOICE_LAYER + 1) * VOICE_DIM]
    if layer == str(VOICE_LAYER) and x.shape[1] == VOICE_DIM:
        return x
    return None


@dataclass
class ClipMeasures:
    """What ``esva explain`` measures on one file, once: the recogniser's prediction, the voice
    and face cues (no transcript yet) and the adapter's input frames."""

    prediction: Prediction  # the recogniser's answer, read as that object
    audio: Any  # the decoded AudioClip, or None (a silent video)
    cues: Any  # esva.llm.cues.ClipCueSet
    features: dict[str, np.ndarray]  # adapter stream -> (T, D) frames
    is_audio: bool = True  # an audio-only file (no video stream was read)
    duration_s: float = 0.0  # the clip's span (audio and video together)


def face_vector(prediction: Prediction) -> np.ndarray | None:
    """The face expert's own 8-class distribution (classes sorted by name) as one frame (the
    entry's ``raw``, there when the expert's classes are not the output classes)."""
    face = face_expert(prediction)
    if face is None or not face.get("raw"):
        return None
    raw = face["raw"]
    return np.array([[float(raw[k]) for k in sorted(raw)]], dtype=np.float32)


def measure_clip(
    recognizer, prosody, registers, path: str | Path, audio: str | Path | None = None, source=None
) -> ClipMeasures:
    """Predict and measure one file with one decode (``esva explain`` and the adapter's build
    script call this, so that training and use measure alike). ``source``: a clip with
    in-memory media (the Python API), ``path`` naming it."""
    from esva.llm.cues import ClipCueSet
    from esva.llm.measure import voice_cues

    if source is None:
        prediction, analysis = recognizer.predict_with_analysis(path, audio=audio)
    else:
        prediction, analysis = recognizer.predict_with_analysis(path, audio=audio, source=source)
    clip = analysis.audio
    voice, reference = [], None
    if clip is not None and len(clip.samples):
        enc = prosody.encode(clip)
        if (v := voice_cues(enc.features, enc.mask, enc.fps)) is not None:
            voice, reference = relate_voice(v, registers)
    features: dict[str, np.ndarray] = {}
    stream = analysis.streams.get(VOICE_FRAMES)
    if stream is not None and voice and stream.mask.any():
        frames = adapter_voice_frames(stream)
        if frames is not None:
            features["voice"] = frames
    if (face := face_vector(prediction)) is not None:
        features["face"] = face
    cues = ClipCueSet(voice=voice, voice_reference=reference, face=face_from_prediction(prediction))
    duration = float(prediction.duration_s)
    if not duration and clip is not None:
        duration = float(clip.duration_s)
    is_audio = bool(getattr(analysis, "is_audio", Path(path).suffix.lower() in AUDIO_SUFFIXES))
    return ClipMeasures(prediction, clip, cues, features, is_audio and audio is None, duration)


class CueExplainer:
    """The default recogniser, the explanation adapter (or a base LM) and the cue measurers,
    loaded once; ``explain(path)`` per file."""

    def __init__(self, recognizer, lm, tokenizer, backbone: str, asr: bool = True, adapter=None):
        self.recognizer, self.lm, self.tokenizer = recognizer, lm, tokenizer
        self.backbone, self.asr, self.adapter = backbone, asr, adapter
        self._prosody = None
        self._transcriber = None
        self._registers = load_voice_reference()

    @classmethod
    def from_pretrained(
        cls,
        backbone: str | None = None,
        recognizer_dir: str | Path | None = None,
        asr: bool = True,
        adapter: str | Path | None = "default",
    ) -> CueExplainer:
        """The recogniser in ``recognizer_dir`` (None: the shipped default) and an LM (see
        :meth:`with_recognizer`)."""
        from esva.apps.inference import Recognizer

        recognizer = Recognizer.from_pretrained(recognizer_dir)
        return cls.with_recognizer(recognizer, backbone=backbone, asr=asr, adapter=adapter)

    @classmethod
    def with_recognizer(
        cls,
        recognizer,
        backbone: str | None = None,
        asr: bool = True,
        adapter: str | Path | None = "default",
    ) -> CueExplainer:
        """``adapter="default"``: the shipped explanation adapter (hash-checked); a folder: one
        built like it (``benchmarks/train_explain_adapter.py``); None, or a ``backbone``: that
        base LM untuned (e.g. a local Llama-2-7b-chat-hf folder) writes the explanation."""
        if backbone is None and adapter is not None:
            from esva.llm.adapter import ExplainAdapter

            if adapter == "default":
                from esva.assets import explain_adapter_dir

                adapter = explain_adapter_dir()
            tuned = ExplainAdapter.from_pretrained(adapter)
            model = tuned.model
            return cls(recognizer, model.lm, model.tokenizer, str(adapter), asr, tuned)
        from esva.llm.backbone import DEFAULT_BACKBONE, load_backbone

        spec = backbone or DEFAULT_BACKBONE
        lm, tokenizer = load_backbone(spec)
        return cls(recognizer, lm, tokenizer, spec, asr)

    @property
    def prosody(self):
        if self._prosody is None:
            from esva.encoders import create_encoder

            self._prosody = create_encoder("prosody")
        return self._prosody

    def _transcribe(self, audio_clip) -> tuple[str | None, str | None]:
        """(transcript, language code) by the multilingual Whisper base, which detects the
        language: the English-only tiny.en turns other languages into English-looking garbage."""
        from esva.encoders import create_encoder

        if audio_clip is None or not len(audio_clip.samples):
            return None, None
        if self._transcriber is None:
            self._transcriber = create_encoder(EXPLAIN_ASR_MODEL)
        result = self._transcriber.transcribe(audio_clip)
        languages = [code for code in result.languages if code]
        language = max(set(languages), key=languages.count) if languages else None
        return result.text.strip() or None, language

    def measure(
        self, path: str | Path, audio: str | Path | None = None, source=None
    ) -> ClipMeasures:
        return measure_clip(self.recognizer, self.prosody, self._registers, path, audio, source)

    def explain(
        self,
        path: str | Path,
        audio: str | Path | None = None,
        task: str = "reason",
        samples: int = 2,
        max_new_tokens: int = 40,
        source=None,
    ) -> dict[str, Any]:
        """``source``: a clip with in-memory media (the Python API), ``path`` naming it."""
        import zlib

        from esva.llm.conclude import explain_with_model
        from esva.llm.parse import emotion_words

        check_task(task)
        path = Path(path)
        m = self.measure(path, audio, source) if source is not None else self.measure(path, audio)
        prediction, cues = m.prediction, m.cues
        wanted = TASK_MODALITIES[task]
        if task == "face" and cues.face is None:
            raise EsvaError("--task face: no face was measured in the file", path)
        if task == "voice" and not cues.voice:
            raise EsvaError("--task voice: no voice was measured in the file", path)
        # The LM's second opinion comes from the clip alone (before any transcript: the
        # adapter was trained without one), then the label from the measured-best pool.
        label, probabilities = prediction.label, dict(prediction.probabilities)
        # `confident` is the recogniser's own calibrated rule (its answer on a long enough clip),
        # never the pool's peak: w = 2 makes the pool over-confident where the LM is wrong.
        confident = bool(prediction.confident)
        second: dict[str, Any] | None = None
        if self.adapter is not None and m.features and self.adapter.classes == list(probabilities):
            second = self._second_opinion(m, label, probabilities)
            if second["applied"]:
                probabilities = second.pop("fused_probabilities")
                label = max(probabilities, key=probabilities.get)
                # The label moved on the LM's word: nothing calibrated says how sure that is.
                confident = confident and label == prediction.label
            else:
                second.pop("fused_probabilities")
        transcript, language = prediction.transcript, None
        if transcript is None and self.asr and cues.voice and "words" in wanted:
            transcript, language = self._transcribe(m.audio)
        flags = list(prediction.flags)
        if transcript is not None and language not in (None, "en"):
            # The explanation model reads English: the words are reported, not reasoned on.
            flags.append(
                f"speech detected as {language!r}: transcript by Whisper base in that language, "
                "not used in the explanation (the explanation model reads English)"
            )
        cues.transcript = transcript if language in (None, "en") else None
        exp = explain_with_model(
            self.lm,
            self.tokenizer,
            cues,
            label,
            probabilities,
            task=task,
            modalities=wanted,
            samples=samples,
            max_new_tokens=max_new_tokens,
            seed=zlib.crc32(path.name.encode()),
            repetition_penalty=1.0 if self.adapter is not None else 1.2,
            score_classes=self.adapter is None,
        )
        present = {"voice": bool(cues.voice), "face": cues.face is not None,
                   "words": bool(cues.transcript)}  # fmt: skip
        measured = [mod for mod, ok in present.items() if ok]
        result = {
            "file": str(path),
            "task": task,
            "label": label,
            "probabilities": probabilities,
            "explanation": exp.text,
            "open_vocabulary": emotion_words(exp.text),
            "cues": {
                "sentences": exp.sentences,
                "voice": [vars(c) for c in cues.voice] if "voice" in wanted else [],
                "voice_reference": cues.voice_reference if "voice" in wanted else None,
                "face": None if cues.face is None or "face" not in wanted else vars(cues.face),
                "transcript": transcript if "words" in wanted else None,
            },
            "modalities": {
                "recogniser": list(prediction.modalities),
                "cues": [mod for mod in measured if mod in wanted],
                "adapter": sorted(m.features) if second is not None else [],
            },
            "second_opinion": second,
            "explanation_source": exp.source,
            "dropped_sentences": exp.dropped,
            "conclusion_logprob": round(exp.conclusion_logprob, 4),
            "lm_scores": {k: round(v, 4) for k, v in exp.lm_scores.items()},
            "transcript": transcript,
            "transcript_language": language,
            "flags": flags,
            "confident": confident,
            "model": prediction.model,
            "llm": llm_name(self.backbone, self.adapter),
            # The recogniser's audio-video offset of the clip (as in `esva predict`: positive =
            # the audio lags the video; None without both a voice and a face).
            "offset_ms": prediction.offset_ms,
            "offset_confidence": prediction.offset_confidence,
        }
        if m.duration_s > LONG_CLIP_S and prediction.timeline:
            result["segments"], summary = segment_summary(prediction.timeline, m.duration_s)
            result["explanation"] = f"{summary}\nOverall: {exp.text}"
        return result

    def _second_opinion(
        self, m: ClipMeasures, label: str, probabilities: dict[str, float]
    ) -> dict[str, Any]:
        """The LM's distribution and whether it may move the label: only for clips like those
        its weight was validated on (:func:`esva.llm.adapter.outside_validation`)."""
        from esva.llm.adapter import VALIDATED_DOMAIN, fuse_with_lm, outside_validation

        lm_probs = self.adapter.second_opinion(m.features, m.cues)
        rate = getattr(m.audio, "native_sample_rate", None) if m.audio is not None else None
        unlike = outside_validation(
            is_audio=m.is_audio,
            has_voice="voice" in m.features,
            sample_rate_hz=rate,
            duration_s=m.duration_s,
            recogniser_sha256=recogniser_weights(m.prediction),
        )
        weight = 0.0 if unlike else self.adapter.lm_weight
        return {
            "lm_probabilities": {k: round(v, 4) for k, v in lm_probs.items()},
            "lm_label": max(lm_probs, key=lm_probs.get),
            "lm_weight": weight,
            "applied": weight > 0,
            "not_applied_because": unlike,
            "validated_on": VALIDATED_DOMAIN,
            "recogniser_label": label,
            "recogniser_probabilities": probabilities,
            "fused_probabilities": fuse_with_lm(probabilities, lm_probs, weight),
        }
