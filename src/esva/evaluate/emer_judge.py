"""EMER judge: an LM scores how well a predicted emotion explanation matches the reference.

EMER (Lian et al., "Explainable Multimodal Emotion Reasoning"; AffectGPT's evaluation) asks a
judge LM for two 0-10 scores per sample:

- **clue overlap**: summarise the emotional clues and state in the reference and in the
  prediction, score their overlap;
- **label overlap**: let the judge name the emotions each description implies (one call per
  description), then score the overlap of the two emotion lists.

The prompts here follow AffectGPT's rubric (steps, output format "score; reason") in our own
words, in English and in Chinese (the EMER-v1 references are Chinese); the language is picked
from the reference text. Scores are read with :func:`parse_score`, which prefers a number after
"score"/"分数" over AffectGPT's "first number in the reply" and rejects values outside 0-10.

**The original judge, OpenAI's gpt-3.5-turbo-16k-0613, is retired.** Scores from any other judge
(a local SmolLM2, a newer API model) are NOT comparable to the published EMER tables; what can
be checked is whether a judge ranks systems the same way (:func:`rank_correlation` against the
published baseline scores, ``benchmarks/emer_judge.py``).

Backends:

- :class:`LocalJudge`: any causal LM esva can load (SmolLM2-135M-Instruct offline by default, a
  local model directory). Besides greedy generation it can read the score directly from the
  LM's next-token distribution after "Score: " (``mode="expected"``: the probability-weighted
  mean of 0..10, as in G-Eval), which a small LM gets right far more often than a free-form
  reply;
- :class:`APIJudge`: an OpenAI-compatible ``/chat/completions`` endpoint (``base_url`` + key),
  for users who have one. It is only contacted when a URL is given.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from esva.errors import EsvaError
from esva.tables import read_rows

log = logging.getLogger(__name__)

RETIRED_JUDGE = "gpt-3.5-turbo-16k-0613"
JUDGE_NOTE = (
    f"The original EMER judge ({RETIRED_JUDGE}) is retired: these scores come from another "
    "judge and are not comparable to published EMER scores."
)
# AffectGPT's EMER-v1 baselines, (clue overlap, label overlap) as published.
PUBLISHED_EMER: dict[str, tuple[float, float]] = {
    "pandagpt": (7.14, 5.51),
    "valley": (7.24, 5.77),
    "videochatemb": (7.15, 5.65),
    "videochattext": (6.42, 3.94),
    "videochatgpt": (6.95, 5.74),
    "videollama": (6.64, 4.89),
}

PROMPTS: dict[str, dict[str, str]] = {
    "en": {
        "clue": (
            "You are given a reference description of the emotional state of a person in a "
            "video and a predicted description. Rate the predicted description from 0 to 10.\n"
            "1. Summarise the emotional clues and the emotional state in the reference.\n"
            "2. Summarise the emotional clues and the emotional state in the prediction.\n"
            "3. The more the two overlap, the higher the score: 0 = nothing in common, "
            "10 = the same clues and the same emotional state.\n"
            "Answer as 'Score: <number>; Reason: <reason>'.\n\n"
            "Reference: {reference}\n\nPrediction: {prediction}"
        ),
        "summary": (
            "From the description of a video below, what is the most likely emotional state "
            "of the person? Answer with emotion words only.\n\n"
            "Description: She seems cheerful, but she is actually very nervous.\n"
            "Emotions: nervous\n\n"
            "Description: {text}\nEmotions:"
        ),
        "label": (
            "You are given the reference emotions of a person and the predicted emotions. "
            "Rate the overlap of the predicted emotions with the reference emotions from 0 "
            "(none) to 10 (the same emotions).\n"
            "Answer as 'Score: <number>; Reason: <reason>'.\n\n"
            "Reference emotions: {reference}\nPredicted emotions: {prediction}"
        ),
        "prefix": "Score: ",
    },
    "zh": {
        "clue": (
            "下面是视频中人物情感状态的参考描述和预测描述。请给预测描述打分，分数为0到10。\n"
            "1. 概括参考描述中的情感线索和情感状态。\n"
            "2. 概括预测描述中的情感线索和情感状态。\n"
            "3. 两者重合越多，分数越高：0分表示毫无共同之处，10分表示线索和情感状态完全一致。\n"
            "请按“分数：<数字>；理由：<理由>”的格式回答。\n\n"
            "参考描述：{reference}\n\n预测描述：{prediction}"
        ),
        "summary": (
            "根据下面的视频描述，推测视频中人物最可能的情感状态，只输出情感词。\n\n"
            "视频描述：她看起来很开心，其实非常紧张。\n"
            "情感：紧张\n\n"
            "视频描述：{text}\n情感："
        ),
        "label": (
            "下面给出人物的参考情感和预测情感。请按两者的重合程度给预测情感打分，"
            "0分表示毫无重合，10分表示完全相同。\n"
            "请按“分数：<数字>；理由：<理由>”的格式回答。\n\n"
            "参考情感：{reference}\n预测情感：{prediction}"
        ),
        "prefix": "分数：",
    },
}

_CJK = re.compile(r"[\u4e00-\u9fff]")
_NUMBER = r"(\d+(?:\.\d+)?)"
_KEYWORD = re.compile(
    r"(?:score|rating|分数|得分|评分)\W{0,4}?\s*(?:is|of|=|:)?\s*" + _NUMBER, re.IGNORECASE
)
_OUT_OF = re.compile(_NUMBER + r"\s*(?:/\s*10\b|out of 10\b|分)")
_FIRST = re.compile(_NUMBER)


def language_of(text: str) -> str:
    """``"zh"`` when the text has Chinese characters, else ``"en"``."""
    return "zh" if _CJK.search(text) else "en"


def parse_score(reply: str) -> float | None:
    """A 0-10 score from a judge's reply, or None when it has none.

    In order: a number after a score keyword ("Score: 7", "'预测分数'：8"), a number out of ten
    ("6/10", "6 out of 10", "6分"), else the first number (AffectGPT's rule). Full-width
    digits are normalised; a value outside [0, 10] is rejected.
    """
    text = unicodedata.normalize("NFKC", reply)
    for pattern in (_KEYWORD, _OUT_OF, _FIRST):
        match = pattern.search(text)
        if match:
            value = float(match.group(1))
            return value if 0.0 <= value <= 10.0 else None
    return None


class JudgeBackend(Protocol):
    name: str

    def complete(self, prompt: str, max_new_tokens: int) -> str:
        """The judge's reply to one user message (greedy / temperature 0)."""
        ...


# ----------------------------------------------------------------------------- backends


@dataclass
class LocalJudge:
    """A causal LM on this machine (see :func:`esva.llm.backbone.load_backbone`)."""

    backbone: str = "smollm2-135m-instruct"
    dtype: str = "float32"
    download: bool = True
    model: Any = field(default=None, repr=False)
    tokenizer: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.model is None:
            from esva.llm.backbone import load_backbone

            self.model, self.tokenizer = load_backbone(
                self.backbone, self.dtype, download=self.download
            )
        self.name = f"local:{self.backbone}"

    def _text(self, prompt: str) -> str:
        messages = [{"role": "user", "content": prompt}]
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def complete(self, prompt: str, max_new_tokens: int = 64) -> str:
        import torch

        ids = self.tokenizer(self._text(prompt), add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            out = self.model.generate(
                **ids,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        return self.tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)

    def expected_score(self, prompt: str, prefix: str) -> tuple[float | None, float]:
        """(probability-weighted score 0-10 after ``prefix``, probability mass on digits).

        The reply is forced to start with ``prefix`` ("Score: "); the next token's distribution
        over the digits gives P(0)..P(9), and P("1" then "0") splits P(1) into 1 and 10. None
        when the tokenizer does not write digits as single tokens after the prefix.
        """
        import torch

        text = self._text(prompt) + prefix
        base = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        digits = {}
        for d in range(10):
            ids = self.tokenizer(text + str(d), add_special_tokens=False)["input_ids"]
            if len(ids) == len(base) + 1 and ids[: len(base)] == base:
                digits[d] = ids[-1]
        if len(digits) < 10:
            return None, 0.0
        with torch.no_grad():
            # One pass over prefix + "1": position -2 predicts the first digit, -1 the one
            # after a "1" (is it "10"?).
            logits = self.model(torch.tensor([[*base, digits[1]]]), use_cache=False).logits
        p = logits[0, -2].float().softmax(-1)
        p_zero = float(logits[0, -1].float().softmax(-1)[digits[0]])
        probs = {d: float(p[digits[d]]) for d in range(10)}
        mass = sum(probs.values())
        probs[10] = probs[1] * p_zero
        probs[1] -= probs[10]
        return sum(k * v for k, v in probs.items()) / mass, mass


@dataclass
class APIJudge:
    """An OpenAI-compatible chat-completions endpoint (``{base_url}/chat/completions``)."""

    base_url: str
    api_key: str | None = None
    model: str = "gpt-4o-mini"
    timeout_s: float = 60.0
    retries: int = 2

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise EsvaError(f"judge API URL must start with http:// or https://: {self.base_url}")
        self.name = f"api:{self.model}"

    def complete(self, prompt: str, max_new_tokens: int = 64) -> str:
        body = json.dumps(
            {
                "model": self.model,
                "messages": [{"role": "user", "content": prompt}],
                "temperature": 0,
                "max_tokens": max_new_tokens,
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = self.base_url.rstrip("/") + "/chat/completions"
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    reply = json.loads(response.read().decode("utf-8"))
                return str(reply["choices"][0]["message"]["content"])
            except urllib.error.HTTPError as exc:
                if exc.code in (429, 500, 502, 503) and attempt < self.retries:
                    time.sleep(2**attempt)
                    continue
                raise EsvaError(f"judge API answered HTTP {exc.code} ({exc.reason})", url) from None
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                if attempt < self.retries:
                    time.sleep(2**attempt)
                    continue
                reason = getattr(exc, "reason", exc)
                raise EsvaError(f"cannot reach the judge API ({reason})", url) from None
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise EsvaError(f"unexpected judge API reply ({exc!r})", url) from None
        raise AssertionError("unreachable")


# ----------------------------------------------------------------------------- the judge


@dataclass
class EmerJudge:
    """Clue and label overlap scores (0-10) of predicted against reference descriptions.

    ``mode="expected"`` reads scores from the local LM's digit probabilities (falls back to
    generation for backends without :meth:`LocalJudge.expected_score`); ``"generate"`` parses
    the reply. ``language`` ``"auto"`` follows the reference text.
    """

    backend: JudgeBackend
    mode: str = "expected"
    language: str = "auto"
    max_new_tokens: int = 48
    _summaries: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in ("expected", "generate"):
            raise EsvaError(f"judge mode must be 'expected' or 'generate', got {self.mode!r}")
        if self.language not in ("auto", *PROMPTS):
            raise EsvaError(f"judge language must be auto, {', '.join(PROMPTS)}")

    def _lang(self, reference: str) -> str:
        return language_of(reference) if self.language == "auto" else self.language

    def _score(self, prompt: str, lang: str) -> tuple[float | None, str]:
        expected = getattr(self.backend, "expected_score", None)
        if self.mode == "expected" and expected is not None:
            value, mass = expected(prompt, PROMPTS[lang]["prefix"])
            if value is not None:
                return value, f"expected over digits (digit mass {mass:.2f})"
        reply = self.backend.complete(prompt, self.max_new_tokens)
        return parse_score(reply), reply

    def clue_score(self, reference: str, prediction: str) -> tuple[float | None, str]:
        lang = self._lang(reference)
        prompt = PROMPTS[lang]["clue"].format(reference=reference, prediction=prediction)
        return self._score(prompt, lang)

    def summarize(self, text: str, lang: str) -> str:
        """The emotion words the judge reads in a description (cached)."""
        key = (lang, text)
        if key not in self._summaries:
            reply = self.backend.complete(PROMPTS[lang]["summary"].format(text=text), 16)
            first = (reply.strip().splitlines() or [""])[0]
            # Small LMs often echo the answer cue ("Emotions: ...", "情感：..."): drop it.
            first = re.sub(r"^\s*(?:emotions?|情感)\s*[:：]\s*", "", first, flags=re.IGNORECASE)
            self._summaries[key] = first.strip() or "-"
        return self._summaries[key]

    def label_score(self, reference: str, prediction: str) -> tuple[float | None, str]:
        lang = self._lang(reference)
        gold, pred = self.summarize(reference, lang), self.summarize(prediction, lang)
        prompt = PROMPTS[lang]["label"].format(reference=gold, prediction=pred)
        value, how = self._score(prompt, lang)
        return value, f"{gold} | {pred} | {how}"

    def score(
        self,
        references: Mapping[str, str],
        predictions: Mapping[str, str],
        which: Sequence[str] = ("clue", "label"),
        cache: dict[str, dict] | None = None,
    ) -> dict[str, Any]:
        """Mean scores of one system over the names it shares with the references.

        ``cache`` (``{name: {"clue": ..., "label": ...}}``) is filled in and reused, so a long
        run can be resumed. Unparseable replies are left out of the means and counted.
        """
        cache = {} if cache is None else cache
        names = [n for n in references if n in predictions]
        if not names:
            raise EsvaError("no sample is both in the references and in the predictions")
        for name in names:
            entry = cache.setdefault(name, {})
            for kind in which:
                if kind not in entry:
                    fn = self.clue_score if kind == "clue" else self.label_score
                    value, detail = fn(references[name], predictions[name] or "")
                    entry[kind], entry[f"{kind}_detail"] = value, detail
        out: dict[str, Any] = {"n": len(names), "judge": self.backend.name, "mode": self.mode}
        for kind in which:
            values = [cache[n][kind] for n in names if cache[n][kind] is not None]
            out[kind] = sum(values) / len(values) if values else math.nan
            out[f"{kind}_unparsed"] = len(names) - len(values)
        out["note"] = JUDGE_NOTE
        return out


def read_reasons(path: str | Path, column: str | None = None) -> dict[str, str]:
    """``{name: text}`` from an EMER CSV (``names`` + ``chi_reasons`` / ``reasons``)."""
    path = Path(path)
    candidates = [column] if column else ["chi_reasons", "eng_reasons", "reasons", "english"]
    header, table = read_rows(path, allow_empty=True)
    text_col = next((c for c in candidates if c in header), None)
    if "names" not in header or text_col is None:
        raise EsvaError(f"expected columns names and one of {candidates}, found {header}", path)
    rows = {row["names"].strip(): row[text_col] or "" for row in table if row["names"]}
    if not rows:
        raise EsvaError("no rows", path)
    return rows


def rank_correlation(
    scores: Mapping[str, float], reference: Mapping[str, float]
) -> dict[str, float]:
    """Spearman's rho and Kendall's tau (with p-values) of ``scores`` against ``reference``."""
    from scipy.stats import kendalltau, spearmanr

    names = [n for n in reference if n in scores and not math.isnan(scores[n])]
    if len(names) < 3:
        raise EsvaError(f"rank correlation needs at least 3 systems, got {len(names)}")
    a = [scores[n] for n in names]
    b = [reference[n] for n in names]
    rho, p_rho = spearmanr(a, b)
    tau, p_tau = kendalltau(a, b)
    return {
        "spearman": float(rho),
        "spearman_p": float(p_rho),
        "kendall": float(tau),
        "kendall_p": float(p_tau),
        "n": len(names),
    }
