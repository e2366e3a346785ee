"""Typed results, one per task: what ``esva.pipeline(task)(...)`` returns.

Each ``to_dict()`` is exactly the JSON object the CLI prints for that task (``esva predict
--json``, ``esva align --json``, ``esva explain --json``), and ``from_dict`` reads it back
(``from_dict(r.to_dict()) == r``), so a result saved as JSON is the same object when loaded.

- :class:`EmotionResult`: :class:`esva.apps.inference.Prediction` itself (a subclass adding
  ``from_dict``), so every field the recogniser reports is here, named as in the JSON.
- :class:`AlignResult`: :class:`esva.sync.estimate.ClipAlignment`'s JSON, the C(τ) curves
  included as lists.
- :class:`ExplainResult`: ``esva explain``'s default (the shipped recogniser, measured cues, the
  explanation adapter or a base LM); :class:`LLMExplainResult`: ``esva explain --model DIR``
  (an adapter from ``esva train-llm``), whose JSON has other fields.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Self

from esva.apps.inference import Prediction
from esva.errors import EsvaError


def _from_dict(cls: type, data: Any, extra: bool = False) -> Any:
    """``cls(**data)``, refusing what is not that result's JSON in one line (``extra``: keys
    that are not fields go to the ``extra`` field, so that a field an explainer adds later
    still round-trips)."""
    if not isinstance(data, dict):
        raise EsvaError(f"a {cls.__name__} is read from a JSON object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)} - ({"extra"} if extra else set())
    unknown = sorted(set(data) - names)
    required = [
        f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
    ]
    missing = [n for n in required if n not in data]
    if extra and not missing:
        known = {k: v for k, v in data.items() if k in names}
        return cls(**known, extra={k: data[k] for k in unknown})
    if unknown or missing:
        parts = [f"unknown {', '.join(unknown)}"] if unknown else []
        parts += [f"missing {', '.join(missing)}"] if missing else []
        raise EsvaError(f"not a {cls.__name__} ({'; '.join(parts)})")
    return cls(**data)


@dataclass
class EmotionResult(Prediction):
    """Emotion, probabilities, timeline, audio-video offset of one clip (``esva predict``)."""

    @classmethod
    def from_prediction(cls, prediction: Prediction) -> Self:
        """The same fields, typed as the result (no copy of the values)."""
        return cls(**{f.name: getattr(prediction, f.name) for f in fields(Prediction)})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return _from_dict(cls, data)


@dataclass
class AlignResult:
    """By how much the voice and the face are out of step (``esva align``; ``offset_ms`` > 0:
    the audio lags the video; None when undefined). The curves (``taus_ms``, ``xcorr``,
    ``cost``) are present when the estimate was made."""

    file: str
    audio_file: str
    offset_ms: float | None
    confidence: float
    peak_z: float
    local_offsets_ms: list[float | None]
    window_start_s: list[float]
    window_s: float
    fps: float
    max_offset_ms: float
    face_coverage: float
    flags: list[str] = field(default_factory=list)
    taus_ms: list[float | None] | None = None
    xcorr: list[float | None] | None = None
    cost: list[float | None] | None = None

    _CURVES = ("taus_ms", "xcorr", "cost")

    @classmethod
    def from_alignment(cls, alignment: Any) -> Self:
        """From :class:`esva.sync.estimate.ClipAlignment` (its ``to_dict`` is the JSON)."""
        return cls.from_dict(alignment.to_dict())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in self._CURVES:  # no estimate: the JSON has no curves at all
            if out[key] is None:
                del out[key]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return _from_dict(cls, data)


class _WithExtra:
    """``to_dict`` / ``from_dict`` for a result that keeps the fields it does not name in
    ``extra`` (an explanation's JSON grows with the explainer)."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)  # type: ignore[call-overload]
        extra = out.pop("extra")  # popped first: the JSON has the fields, never an "extra" key
        return {**out, **extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return _from_dict(cls, data, extra=True)


@dataclass
class ExplainResult(_WithExtra):
    """``esva explain``'s default answer: the label (the recogniser's, with the adapter's second
    opinion fused when it was validated for the clip), the explanation, the measured cues."""

    file: str
    task: str
    label: str
    probabilities: dict[str, float]
    explanation: str
    open_vocabulary: list[str]
    cues: dict[str, Any]
    modalities: dict[str, list[str]]
    second_opinion: dict[str, Any] | None
    explanation_source: str
    dropped_sentences: list[dict[str, Any]]
    conclusion_logprob: float
    lm_scores: dict[str, float]
    transcript: str | None
    flags: list[str]
    confident: bool
    model: str
    llm: str
    # The recogniser's audio-video offset (``EmotionResult.offset_ms``: positive = the audio
    # lags the video) and its confidence; None without both a voice and a face.
    offset_ms: float | None = None
    offset_confidence: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields this class does not name yet


@dataclass
class LLMExplainResult(_WithExtra):
    """``esva explain --model DIR``: an adapter from ``esva train-llm`` answers the recognition
    prompt and writes the reasoning."""

    file: str
    label: str
    explanation: str
    recognition_answer: str
    label_from_explanation: str | None
    classes: list[str]
    streams: list[str]
    transcript: str | None
    flags: list[str]
    cues: dict[str, Any]
    confident: bool
    extraction: dict[str, Any]
    model: str
    extra: dict[str, Any] = field(default_factory=dict)  # fields this class does not name yet


def explain_result(data: dict[str, Any]) -> ExplainResult | LLMExplainResult:
    """The typed result of an explainer's JSON object (either explainer)."""
    if "recognition_answer" in data:
        return LLMExplainResult.from_dict(data)
    return ExplainResult.from_dict(data)


__all__ = [
    "AlignResult",
    "EmotionResult",
    "ExplainResult",
    "LLMExplainResult",
    "explain_result",
]
