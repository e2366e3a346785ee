"""MERR-style instruction data, made the way MERR was made: measured cues -> descriptions.

MERR (Emotion-LLaMA, Cheng et al. 2024) describes each clip from measured cues (action units and
the peak frame of the face, the audio tone, the subtitle) and the label: a *coarse* caption that
lists the cues, and a *fine* caption (``smp_reason_caption``) in which an LM reasons from the
cues to the emotion. This module does the same from esva's own offline encoders (the
measurements are :mod:`esva.llm.measure`'s, which ``esva explain`` reads at answer time too):

- face (``fer-cnn`` stream): the 7 FER expression probabilities per frame -> the dominant
  expression in each third of the clip (the trajectory), the most expressive frame (the peak:
  the frame least likely to be neutral) and its expression;
- voice (``prosody`` stream): median F0 (Hz), F0 range (semitones between the 10th and 90th
  percentile of voiced frames), loudness (median frame energy of the active frames, dBFS), a
  speech-rate proxy (energy peaks on voiced frames per second of the active span: the syllable
  nuclei of de Jong & Wempe 2009) and the harmonics-to-noise ratio. Each is also expressed
  *relative to the same speaker's median clip* (or the whole set's, without speakers), because
  an absolute 220 Hz is high for one voice and low for another;
- the transcript, when there is one; and the label.

:func:`describe` writes the coarse caption (the cues with their numbers), :func:`reason` the fine
one: the cues in words, what they say about arousal, which of them fit the label (typical vocal
profiles after Juslin & Laukka 2003, expressions after FER-2013's classes), ending in
Emotion-LLaMA's conclusion phrase "Therefore, it is inferred that his emotional state is: sad".
Optionally :class:`LMRewriter` has a local LM rewrite the fine caption into freer prose; a
rewrite that no longer names the label (checked with :func:`esva.llm.parse.label_strict`) is
dropped and the template kept.

Everything is written in MERR's own format (JSON objects keyed by clip name, read back by
:mod:`esva.data.datasets.merr`): ``MERR_coarse_grained.json`` (``caption``),
``MERR_fine_grained.json`` (``smp_reason_caption``, plus the label and the measured cues) and
the annotation list ``MERR_fine_grained.txt`` (``name label``)::

    esva captions --store runs/feats --out runs/merr [--rewrite]
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from esva.data.datasets.merr import (
    COARSE_JSON,
    FINE_JSON,
    FINE_LIST,
    read_merr_json,
    write_merr_json,
)
from esva.data.streams import clip_path, read_stream
from esva.errors import EsvaError
from esva.io import atomic_write

# The measurements are esva.llm.measure's (esva explain measures alike); named here too.
from esva.llm.measure import ENERGY_DB as ENERGY_DB
from esva.llm.measure import FACE_LABELS as FACE_LABELS
from esva.llm.measure import HNR_DB as HNR_DB
from esva.llm.measure import LOG2_F0 as LOG2_F0
from esva.llm.measure import VOICED as VOICED
from esva.llm.measure import FaceCues, VoiceCues, face_cues, voice_cues

log = logging.getLogger(__name__)

FACE_WORDS = {
    "angry": "angry",
    "disgust": "disgusted",
    "fear": "fearful",
    "happy": "happy",
    "sad": "sad",
    "surprise": "surprised",
    "neutral": "neutral",
}

# Thresholds of the words "higher", "louder", "faster", "wider" against the speaker's median clip.
# About half a typical within-speaker spread on RAVDESS: smaller changes are called "usual".
PITCH_ST = 1.5  # semitones
LOUDNESS_DB = 3.0  # dB
RATE_RATIO = 1.15  # x (and 1 / x for "slower")
RANGE_RATIO = 1.25  # x

# Typical vocal profile per emotion: +1 raised, -1 lowered, 0 no consistent direction, in
# (pitch, loudness, rate, range). After Juslin & Laukka (2003, Table 7) and Banse & Scherer (1996).
VOCAL_PROFILES: dict[str, tuple[int, int, int, int]] = {
    "angry": (1, 1, 1, 1),
    "happy": (1, 1, 1, 1),
    "surprised": (1, 0, 0, 1),
    "fearful": (1, 0, 1, -1),
    "worried": (1, 0, 1, -1),
    "sad": (-1, -1, -1, -1),
    "calm": (-1, -1, -1, 0),
    "neutral": (0, 0, 0, 0),
    "disgust": (-1, 0, -1, 0),
    "contempt": (-1, 0, -1, 0),
    "doubt": (0, 0, -1, 0),
}
# The FER expression that shows each emotion on the face.
FACE_OF = {
    "angry": "angry",
    "happy": "happy",
    "surprised": "surprise",
    "fearful": "fear",
    "worried": "fear",
    "sad": "sad",
    "calm": "neutral",
    "neutral": "neutral",
    "disgust": "disgust",
    "contempt": "disgust",
}
# Other spellings of the classes above (Emotion-LLaMA's "fear"/"surprise", MELD's "joy", ...).
ALIASES = {
    "fear": "fearful",
    "surprise": "surprised",
    "anger": "angry",
    "joy": "happy",
    "sadness": "sad",
    "disgusted": "disgust",
}
CUE_NAMES = ("pitch", "loudness", "rate", "range")


def canonical(label: str) -> str:
    return ALIASES.get(label.lower(), label.lower())


# ----------------------------------------------------------------------------- measuring


@dataclass
class ClipCues:
    name: str
    label: str | None = None
    transcript: str | None = None
    speaker: str | None = None
    sex: str | None = None  # "male" / "female" chooses the pronoun
    face: FaceCues | None = None
    voice: VoiceCues | None = None

    def to_dict(self) -> dict[str, Any]:
        return _rounded(asdict(self))


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def relate_to_speakers(cues: Sequence[ClipCues]) -> None:
    """Fill the ``*_rel`` voice fields against each speaker's median clip (in place).

    Clips without a speaker are compared with the median of all speaker-less clips. A group of
    one clip has nothing to be compared with, and keeps None.
    """
    groups: dict[str | None, list[VoiceCues]] = {}
    for c in cues:
        if c.voice is not None:
            groups.setdefault(c.speaker, []).append(c.voice)
    for voices in groups.values():
        if len(voices) < 2:
            continue

        def median(values: Iterable[float | None]) -> float | None:
            vals = [v for v in values if v is not None]
            return float(np.median(vals)) if vals else None

        f0 = median(v.f0_hz for v in voices)
        loud = median(v.loudness_db for v in voices)
        rate = median(v.rate_per_s for v in voices)
        rng = median(v.f0_range_st for v in voices)
        for v in voices:
            if f0 and v.f0_hz:
                v.pitch_rel_st = float(12 * np.log2(v.f0_hz / f0))
            if loud is not None:
                v.loudness_rel_db = v.loudness_db - loud
            if rate:
                v.rate_rel = v.rate_per_s / rate
            if rng and v.f0_range_st is not None:
                v.range_rel = v.f0_range_st / rng


def cues_from_store(
    root: str | Path,
    clips: Iterable[Any],
    voice: str | None = "prosody",
    face: str | None = "fer-cnn",
    transcripts: Mapping[str, str] | None = None,
) -> list[ClipCues]:
    """Measure the cues of ``clips`` from a feature store (``esva extract`` output).

    ``clips`` are records with ``name`` and optionally ``label``, ``speaker``, ``text`` and
    ``extra["sex"]`` (``ClipSource`` or ``ClipLabel``); ``voice`` / ``face`` name the store's
    prosody and fer-cnn folders (None to leave one out). A clip's transcript comes from
    ``transcripts``, else the clip's ``text``, else the store's manifest (ASR). Voice cues are
    then put relative to each speaker (:func:`relate_to_speakers`).
    """
    from esva.extract.feature_store import FeatureStore

    root = Path(root)
    store = FeatureStore(root)
    for folder in (voice, face):
        if folder is not None and not (root / folder).is_dir():
            raise EsvaError(f"no {folder!r} folder in the feature store", root)
    out = []
    for clip in clips:
        c = ClipCues(
            name=clip.name,
            label=getattr(clip, "label", None),
            speaker=getattr(clip, "speaker", None),
            sex=(getattr(clip, "extra", None) or {}).get("sex"),
        )
        text = (transcripts or {}).get(c.name) or getattr(clip, "text", None)
        if not text:
            entry = store.entry(c.name) or {}
            text = (entry.get("info") or {}).get("transcript")
        c.transcript = text or None
        if face is not None and (path := clip_path(root, face, c.name)).exists():
            s = read_stream(path)
            c.face = face_cues(s.features, s.mask, s.fps, s.start_s)
        if voice is not None and (path := clip_path(root, voice, c.name)).exists():
            s = read_stream(path)
            c.voice = voice_cues(s.features, s.mask, s.fps)
        out.append(c)
    relate_to_speakers(out)
    return out


# ----------------------------------------------------------------------------- writing


def _pronouns(sex: str | None) -> tuple[str, str]:
    """(subject, possessive)."""
    return {"male": ("he", "his"), "female": ("she", "her")}.get(sex or "", ("the person", "their"))


def _signs(v: VoiceCues) -> dict[str, int]:
    """-1 / 0 / +1 per cue against the speaker's usual delivery (0 when unknown)."""

    def sign(value: float | None, up: float, down: float) -> int:
        if value is None:
            return 0
        return 1 if value >= up else -1 if value <= down else 0

    return {
        "pitch": sign(v.pitch_rel_st, PITCH_ST, -PITCH_ST),
        "loudness": sign(v.loudness_rel_db, LOUDNESS_DB, -LOUDNESS_DB),
        "rate": sign(v.rate_rel, RATE_RATIO, 1 / RATE_RATIO),
        "range": sign(v.range_rel, RANGE_RATIO, 1 / RANGE_RATIO),
    }


_CUE_WORDS = {
    "pitch": ("a higher pitch", "a lower pitch"),
    "loudness": ("a louder voice", "a softer voice"),
    "rate": ("a faster pace", "a slower pace"),
    "range": ("a livelier melody", "a flatter melody"),
}


def _face_sentence(f: FaceCues, subject: str) -> str:
    words = [FACE_WORDS[t] for t in f.trajectory]
    if len(set(words)) == 1:
        course = f"a mostly {words[0]} face"
    else:
        course = f"a face that looks {words[0]} at first and {words[-1]} towards the end"
    peak = FACE_WORDS[f.peak_expression]
    return (
        f"In the video, {subject} shows {course}; the most expressive moment, at "
        f"{f.peak_time_s:.1f} s, looks {peak}."
    )


def _voice_sentence(v: VoiceCues, subject: str, possessive: str) -> str:
    signs = _signs(v)
    changed = [_CUE_WORDS[c][0 if s > 0 else 1] for c, s in signs.items() if s]
    if v.pitch_rel_st is None:  # nothing to compare with: absolute values
        pitch = f"a median pitch of {v.f0_hz:.0f} Hz" if v.f0_hz else "little voiced sound"
        return (
            f"{subject.capitalize()} speaks with {pitch} at about {v.rate_per_s:.1f} syllables "
            "per second."
        )
    if not changed:
        return (
            f"{subject.capitalize()} speaks much as usual: pitch, loudness, pace and melody are "
            f"close to {possessive} median clip."
        )
    listed = changed[0] if len(changed) == 1 else ", ".join(changed[:-1]) + " and " + changed[-1]
    ups = sum(s > 0 for c, s in signs.items() if c != "range")
    downs = sum(s < 0 for c, s in signs.items() if c != "range")
    arousal = (
        " These are signs of high arousal."
        if ups >= 2
        else " These are signs of low arousal."
        if downs >= 2
        else ""
    )
    return f"Compared with {possessive} usual delivery, {subject} speaks with {listed}.{arousal}"


def _fits(c: ClipCues, label: str) -> tuple[list[str], list[str]]:
    """(cues that fit ``label``'s typical profile, cues that go against it), in words."""
    fit, against = [], []
    profile = VOCAL_PROFILES.get(canonical(label))
    if c.voice is not None and profile is not None and c.voice.pitch_rel_st is not None:
        signs = _signs(c.voice)
        for cue, expected in zip(CUE_NAMES, profile, strict=True):
            seen = signs[cue]
            if expected and seen == expected:
                fit.append(_CUE_WORDS[cue][0 if seen > 0 else 1])
            elif expected and seen == -expected:
                against.append(_CUE_WORDS[cue][0 if seen > 0 else 1])
    expression = FACE_OF.get(canonical(label))
    if c.face is not None and expression is not None:
        shown = {c.face.peak_expression, *c.face.trajectory}
        words = f"the {FACE_WORDS[expression]} look"
        (fit if expression in shown else against).append(words)
    return fit, against


def _words_sentence(c: ClipCues) -> str:
    from esva.llm.parse import emotion_words

    if not c.transcript:
        return ""
    said = c.transcript.strip().rstrip(".")
    named = emotion_words(said)
    if named:
        return f'The words "{said}" speak of {", ".join(named)}.'
    return f'The words "{said}" name no emotion, so the delivery carries it.'


def describe(c: ClipCues) -> str:
    """The coarse caption: the measured cues with their numbers (MERR's ``caption``)."""
    parts = []
    if c.face is not None:
        f = c.face
        course = ", then ".join(FACE_WORDS[t] for t in f.trajectory)
        parts.append(
            f"Facial expression over the clip: {course}"
            f"; peak frame {f.peak_frame} ({f.peak_time_s:.2f} s): {FACE_WORDS[f.peak_expression]}"
            f" (p={f.peak_probability:.2f}); face visible in {100 * f.coverage:.0f}% of frames."
        )
    if c.voice is not None:
        v = c.voice

        def rel(value: float | None, fmt: str) -> str:
            return "" if value is None else f" ({fmt.format(value)} vs. the speaker's median)"

        pitch = "no stable pitch" if v.f0_hz is None else f"median pitch {v.f0_hz:.0f} Hz"
        rng = "" if v.f0_range_st is None else f", range {v.f0_range_st:.1f} semitones"
        parts.append(
            f"Voice: {pitch}{rel(v.pitch_rel_st, '{:+.1f} st')}{rng}"
            f"{rel(v.range_rel, 'x{:.2f}')}; loudness {v.loudness_db:.1f} dBFS"
            f"{rel(v.loudness_rel_db, '{:+.1f} dB')}; {v.rate_per_s:.1f} syllables/s"
            f"{rel(v.rate_rel, 'x{:.2f}')}; voiced {100 * v.voiced_fraction:.0f}% of "
            f"{v.active_s:.1f} s"
            + ("" if v.hnr_db is None else f"; harmonics-to-noise {v.hnr_db:.1f} dB")
            + "."
        )
    if c.transcript:
        parts.append(f'Subtitle: "{c.transcript.strip()}".')
    return " ".join(parts) if parts else "No facial or vocal cues were measured."


def reason(c: ClipCues, label: str | None = None) -> str:
    """The fine caption: cues in words -> the label (MERR's ``smp_reason_caption``)."""
    label = label or c.label
    if not label:
        raise EsvaError(f"clip {c.name!r} has no label to reason towards")
    subject, possessive = _pronouns(c.sex)
    parts = []
    if c.face is not None:
        parts.append(_face_sentence(c.face, subject))
    if c.voice is not None:
        parts.append(_voice_sentence(c.voice, subject, possessive))
    if words := _words_sentence(c):
        parts.append(words)
    fit, against = _fits(c, label)
    if fit:
        parts.append(f"{_join(fit).capitalize()} {'fits' if len(fit) == 1 else 'fit'} {label}.")
    if against:
        parts.append(f"Only {_join(against)} {'does' if len(against) == 1 else 'do'} not.")
    possessive = {"he": "his", "she": "her"}.get(subject, "the person's")
    parts.append(f"Therefore, it is inferred that {possessive} emotional state is: {label}.")
    return " ".join(parts)


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


# ----------------------------------------------------------------------------- LM rewrite


@dataclass
class LMRewriter:
    """A local LM rewrites the templated reasoning into freer prose (MERR used LLaMA-3).

    A rewrite is kept only if it still concludes with the clip's label (strict parser over
    ``classes``) and is not much longer than the template; otherwise the template stays.
    """

    backbone: str = "smollm2-135m-instruct"
    classes: Sequence[str] = ()
    max_new_tokens: int = 160
    download: bool = True
    _lm: Any = field(default=None, init=False, repr=False)
    _tokenizer: Any = field(default=None, init=False, repr=False)

    PROMPT = (
        "Rewrite this description of a person's emotional cues as two or three fluent "
        "sentences. Keep every fact and end with the same conclusion.\n\n{text}"
    )

    def rewrite(self, text: str, label: str) -> str | None:
        """The LM's rewrite of ``text`` if :meth:`accept` keeps it, else None."""
        answer = self.generate(self.PROMPT.format(text=text))
        return answer if self.accept(answer, text, label) else None

    def accept(self, answer: str, text: str, label: str) -> bool:
        """Keep a rewrite that still concludes with ``label`` and is not much longer."""
        from esva.llm.parse import label_strict

        classes = list(self.classes) or [label]
        return label_strict(answer, classes) == label and len(answer) <= 2 * len(text)

    def generate(self, prompt: str) -> str:
        import torch

        from esva.llm.backbone import load_backbone

        if self._lm is None:
            self._lm, self._tokenizer = load_backbone(self.backbone, download=self.download)
        messages = [{"role": "user", "content": prompt}]
        inputs = self._tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            out = self._lm.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=self._tokenizer.pad_token_id,
            )
        new = out[0, inputs["input_ids"].shape[1] :]
        return " ".join(self._tokenizer.decode(new, skip_special_tokens=True).split())


# ----------------------------------------------------------------------------- MERR files


def build_merr(
    cues: Sequence[ClipCues], rewriter: LMRewriter | None = None
) -> tuple[dict[str, dict], dict[str, dict]]:
    """``(coarse, fine)`` MERR entries keyed by clip name (labelled clips only in ``fine``)."""
    coarse: dict[str, dict] = {}
    fine: dict[str, dict] = {}
    kept = 0
    for c in cues:
        coarse[c.name] = {"caption": describe(c)}
        if not c.label:
            continue
        text = reason(c)
        rewritten = rewriter.rewrite(text, c.label) if rewriter is not None else None
        kept += rewritten is not None
        fine[c.name] = {
            "smp_reason_caption": rewritten or text,
            "label": c.label,
            "template": text if rewritten else None,
            "cues": c.to_dict(),
        }
        if not rewritten:
            del fine[c.name]["template"]
    if rewriter is not None:
        log.info("LM rewrites kept for %d of %d clips", kept, len(fine))
    return coarse, fine


def write_merr(out_dir: str | Path, coarse: Mapping, fine: Mapping) -> dict[str, Path]:
    """Write MERR's two JSON files (and the ``name label`` list) into ``out_dir``, atomically.

    The labels are always in the fine entries (``label``). MERR's annotation list only allows
    its nine classes, so it is written only when every label is one of them (RAVDESS's calm
    and disgust, e.g., are not).
    """
    from esva.labelsets import MERR_CLASSES as CLASSES

    out = Path(out_dir)
    paths = {"coarse": out / COARSE_JSON, "fine": out / FINE_JSON}
    write_merr_json(paths["coarse"], coarse)
    write_merr_json(paths["fine"], fine)
    labels = {name: e.get("label") for name, e in fine.items()}
    if labels and all(label in CLASSES for label in labels.values()):
        paths["labels"] = out / FINE_LIST
        with atomic_write(paths["labels"]) as handle:
            handle.writelines(f"{name} {label}\n" for name, label in labels.items())
    return paths


def read_reasoning(path: str | Path) -> dict[str, str]:
    """``{name: smp_reason_caption}`` of a MERR fine-grained JSON (entries without one skipped)."""
    return {
        name: e["smp_reason_caption"]
        for name, e in read_merr_json(path).items()
        if e.get("smp_reason_caption")
    }
