"""Measured cues as text for a language model, and a checker that keeps its sentences true.

An explanation may only say what was measured. The cues of one clip (:class:`ClipCueSet`) are
the voice's pitch, loudness, pace and melody *relative to a stated reference* (each a
:class:`VoiceCue` with its value, reference, margin and direction: +1 above the reference by
at least the margin, -1 below by at least the margin, 0 within it), the face expert's
expression distribution (pooled, per window over time, and at its most expressive frame), and
the transcript.

:func:`check_sentence` reads one sentence for the claims it makes about these cues ("a higher
pitch", "speaks softly", "smiles", "a sad face", ...) and returns the claims the measurements do
not support; a claim about a modality that was not measured is unsupported too. ``esva
explain`` never ships a sentence with an unsupported claim (:func:`esva.llm.conclude`).
The vocabulary is deliberately small and literal: what it does not recognise it does not
judge, and the tests list what it does.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

# Margins of the words "higher", "louder", "faster", "livelier" against the reference: the
# thresholds esva.recipes.captions uses against a speaker's median clip (about half a typical
# within-speaker spread on RAVDESS); smaller differences are "as usual".
PITCH_MARGIN_ST = 1.5  # semitones
LOUDNESS_MARGIN_DB = 3.0  # dB
RATE_MARGIN = 1.15  # ratio (and 1 / ratio for "slower")
RANGE_MARGIN = 1.25  # ratio

# The face expert's expressions that each word shows.
FACE_EXPRESSIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")
_FACE_ALIASES = {
    "fear": "fearful",
    "surprise": "surprised",
    "disgusted": "disgust",
    "contempt": "disgust",
    "anger": "angry",
    "happiness": "happy",
    "sadness": "sad",
}

WORDS = {  # direction -> words used in cue sentences
    "pitch": ("a higher pitch", "a lower pitch", "a usual pitch"),
    "loudness": ("a louder voice", "a softer voice", "a usual loudness"),
    "pace": ("a faster pace", "a slower pace", "a usual pace"),
    "melody": ("a livelier melody", "a flatter melody", "a usual melody"),
}


def face_expression(name: str) -> str:
    """A face expert class name in this module's spelling (``fear`` -> ``fearful``)."""
    key = name.lower()
    return _FACE_ALIASES.get(key, key)


@dataclass
class VoiceCue:
    """One voice measurement against its reference."""

    name: str  # pitch | loudness | pace | melody
    value: float  # the clip's measurement, in ``unit``
    reference: float  # the reference's, in ``unit``
    unit: str
    difference: float  # semitones / dB for pitch and loudness; a ratio for pace and melody
    margin: float  # |difference| (or ratio) needed for a direction
    direction: int  # +1 / -1 / 0

    def words(self) -> str:
        return WORDS[self.name][{1: 0, -1: 1, 0: 2}[self.direction]]

    def describe(self) -> str:
        if self.name in ("pitch", "loudness"):
            unit = "semitones" if self.name == "pitch" else "dB"
            diff = f"{self.difference:+.1f} {unit}"
            need = f"margin {self.margin:g} {unit}"
        else:
            diff, need = f"x{self.difference:.2f}", f"margin x{self.margin:g}"
        return (
            f"{self.words()} ({self.value:.1f} {self.unit}, {diff} against the reference "
            f"{self.reference:.1f} {self.unit}; {need})"
        )


def direction(difference: float, margin: float, ratio: bool = False) -> int:
    """+1 / -1 / 0: above, below or within the margin (a ratio's margin is multiplicative)."""
    if ratio:
        return 1 if difference >= margin else -1 if difference <= 1.0 / margin else 0
    return 1 if difference >= margin else -1 if difference <= -margin else 0


@dataclass
class FaceTrackCue:
    """The face expert's expressions over the clip."""

    probabilities: dict[str, float]  # pooled over the clip
    windows: list[dict[str, Any]] = field(default_factory=list)  # start_s, end_s, probabilities
    peak_time_s: float | None = None
    coverage: float | None = None

    def top(self) -> str:
        return max(self.probabilities, key=self.probabilities.get)

    def shown(self) -> set[str]:
        """Expressions the face shows: the top one pooled or in any window (never one that
        never leads)."""
        tops = {face_expression(self.top()), *self.trajectory()}
        for w in self.windows:
            p = w.get("probabilities") or {}
            if p:
                tops.add(face_expression(max(p, key=p.get)))
        return tops

    def trajectory(self) -> list[str]:
        """The leading expression in the first, middle and last third of the windows."""
        if not self.windows:
            return [face_expression(self.top())]
        thirds = [
            self.windows[len(self.windows) * i // 3 : len(self.windows) * (i + 1) // 3]
            for i in range(3)
        ]
        out = []
        for part in thirds:
            if not part:
                continue
            total: dict[str, float] = {}
            for w in part:
                for k, v in (w.get("probabilities") or {}).items():
                    total[k] = total.get(k, 0.0) + float(v)
            if total:
                out.append(face_expression(max(total, key=total.get)))
        return out or [face_expression(self.top())]

    def describe(self) -> str:
        course = self.trajectory()
        if len(set(course)) == 1:
            text = f"a mostly {course[0]} face"
        else:
            text = f"a face that looks {course[0]} at first and {course[-1]} at the end"
        top = self.top()
        text += f" ({face_expression(top)} {self.probabilities[top]:.2f} over the clip"
        if self.peak_time_s is not None:
            text += f"; most expressive at {self.peak_time_s:.1f} s"
        return text + ")"


@dataclass
class ClipCueSet:
    """Everything measured on one clip that an explanation may rest on."""

    voice: list[VoiceCue] = field(default_factory=list)
    voice_reference: str | None = None  # which reference the voice is compared with
    face: FaceTrackCue | None = None
    transcript: str | None = None

    def voice_cue(self, name: str) -> VoiceCue | None:
        return next((c for c in self.voice if c.name == name), None)

    def lines(self, modalities: tuple[str, ...] = ("voice", "face", "words")) -> list[str]:
        """The cues as prompt lines (measured values, stated references and margins)."""
        out = []
        if "voice" in modalities and self.voice:
            out.append("Voice: " + "; ".join(c.describe() for c in self.voice) + ".")
        if "face" in modalities and self.face is not None:
            out.append("Face: " + self.face.describe() + ".")
        if "words" in modalities and self.transcript:
            out.append(f'Words: "{self.transcript.strip()}".')
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- checking


@dataclass
class Claim:
    """One thing a sentence says about a cue, and whether the measurements support it."""

    cue: str  # pitch | loudness | pace | melody | face | emotion
    said: str  # the words that make the claim
    expected: int | str  # the direction or expression the claim needs
    supported: bool
    measured: Any = None  # what was measured (direction, or the expressions the face showed)


def _rx(*words: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(words) + r")\b")


# (cue, direction, pattern). Patterns are matched on the lower-cased sentence.
_VOICE_CLAIMS: tuple[tuple[str, int, re.Pattern[str]], ...] = (
    ("pitch", 1, _rx(r"high(?:er)?[- ]pitch(?:ed)?", r"pitch (?:is |was )?(?:high|higher|raised)",
                     r"raised pitch", r"rais(?:es|ed|ing) (?:his |her |their )?pitch",
                     r"high(?:er)?(?: \w+){0,3} (?:frequency|tone|register)",
                     r"high[- ]frequency")),
    ("pitch", -1, _rx(r"low(?:er)?[- ]pitch(?:ed)?", r"pitch (?:is |was )?(?:low|lower|dropped)",
                      r"deep(?:er)?", r"low(?:er)?(?: \w+){0,3} (?:frequency|tone|register)",
                      r"low[- ]frequency")),
    ("loudness", 1, _rx(r"loud(?:er|ly)?", r"shout(?:s|ed|ing)?", r"yell(?:s|ed|ing)?",
                        r"raised voice", r"(?:high(?:er)?|increased|more) volume",
                        r"volume (?:is |was )?(?:high|higher|raised)")),
    ("loudness", -1, _rx(r"soft(?:er|ly)?", r"quiet(?:er|ly)?", r"whisper(?:s|ed|ing)?",
                         r"(?:low(?:er)?|reduced|less) volume")),
    ("pace", 1, _rx(r"fast(?:er)?", r"quick(?:er|ly)?", r"rapid(?:ly)?", r"hurried(?:ly)?",
                    r"speed(?:s|ing)? up")),
    ("pace", -1, _rx(r"slow(?:er|ly)?")),
    ("melody", 1, _rx(r"livel(?:y|ier)", r"varied (?:melody|intonation|pitch)",
                      r"wid(?:e|er) (?:pitch )?range", r"animated", r"expressive intonation")),
    ("melody", -1, _rx(r"flat(?:ter)?", r"monoton(?:e|ous)")),
)  # fmt: skip
# Words that show a face expression.
_FACE_CLAIMS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("happy", _rx(r"smil(?:e|es|ed|ing)", r"grin(?:s|ned|ning)?", r"laugh(?:s|ed|ing)?")),
    ("sad", _rx(r"tears?", r"cr(?:y|ies|ying)", r"downturned")),
    ("angry", _rx(r"frown(?:s|ed|ing)?", r"scowl(?:s|ed|ing)?", r"glar(?:e|es|ed|ing)")),
    ("surprised", _rx(r"wide[- ]eyed", r"raised eyebrows", r"gasp(?:s|ed|ing)?")),
    ("disgust", _rx(r"grimac(?:e|es|ed|ing)", r"wrinkl(?:es|ed|ing) (?:his |her |the )?nose")),
)
_FACE_CONTEXT = _rx(r"face", r"facial", r"expression", r"looks?", r"eyes", r"mouth")
_EXPRESSION_WORDS = {
    "happy": "happy",
    "sad": "sad",
    "angry": "angry",
    "fearful": "fearful",
    "afraid": "fearful",
    "scared": "fearful",
    "disgusted": "disgust",
    "surprised": "surprised",
    "neutral": "neutral",
}
_NEGATION = _rx("not", "no", "never", "without", "neither", "nor", r"isn't", r"doesn't")


def _negated(text: str, start: int) -> bool:
    """A negator among the three words before ``start`` (in the same clause)."""
    before = re.split(r"[,;:]|\bbut\b", text[:start])[-1].split()[-3:]
    return any(_NEGATION.fullmatch(w) for w in before)


def claims(sentence: str, cues: ClipCueSet) -> list[Claim]:
    """The cue claims ``sentence`` makes, each marked supported or not by ``cues``."""
    text = sentence.lower().replace("\u2019", "'")
    out: list[Claim] = []
    for cue, sign, pattern in _VOICE_CLAIMS:
        for m in pattern.finditer(text):
            if _negated(text, m.start()):
                continue
            measured = cues.voice_cue(cue)
            seen = None if measured is None else measured.direction
            out.append(Claim(cue, m.group(0), sign, seen == sign, seen))
    shown = cues.face.shown() if cues.face is not None else set()
    for expression, pattern in _FACE_CLAIMS:
        for m in pattern.finditer(text):
            if not _negated(text, m.start()):
                ok = expression in shown
                out.append(Claim("face", m.group(0), expression, ok, sorted(shown)))
    if _FACE_CONTEXT.search(text):  # "a sad face", "looks angry", "a happy expression"
        for word, expression in _EXPRESSION_WORDS.items():
            for m in re.finditer(rf"\b{word}\b", text):
                if not _negated(text, m.start()):
                    ok = expression in shown
                    out.append(Claim("face", m.group(0), expression, ok, sorted(shown)))
    return out


def check_sentence(sentence: str, cues: ClipCueSet) -> list[Claim]:
    """The claims of ``sentence`` that the measurements do not support (empty: it may ship)."""
    return [c for c in claims(sentence, cues) if not c.supported]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (a final fragment without end punctuation is its own item)."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def cue_sentences(cues: ClipCueSet, modalities: tuple[str, ...] = ("voice", "face")) -> list[str]:
    """Plain sentences that state the measured cues (true by construction): the fallback when
    no generated sentence passes the checker."""
    out = []
    if "voice" in modalities and cues.voice:
        changed = [c.words() for c in cues.voice if c.direction]
        if changed:
            listed = changed[0] if len(changed) == 1 else ", ".join(changed[:-1])
            listed += "" if len(changed) == 1 else f" and {changed[-1]}"
            out.append(f"Compared with {cues.voice_reference}, the voice has {listed}.")
        else:
            out.append(f"Pitch, loudness, pace and melody are close to {cues.voice_reference}.")
    if "face" in modalities and cues.face is not None:
        out.append(f"The face expert sees {cues.face.describe()}.")
    return out
