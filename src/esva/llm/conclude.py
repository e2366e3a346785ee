"""Decoding an explanation whose conclusion is the recogniser's label and whose cues are true.

The recogniser decides the label; the language model only explains it, from the measured cues
given as text (:mod:`esva.llm.cues`). Two rules hold by construction, at decoding time:

1. **The conclusion names the label.** The LM writes its reasoning; then the fixed final clause
   ``"Therefore, the emotion is <label>."`` is *force-decoded*: its tokens are appended to the
   sequence as the continuation (teacher-forced through the same model, so its log-probability
   is measured and reported), never pasted over generated text. While the reasoning is sampled,
   the other classes' names are banned tokens (``bad_words_ids``), so the reasoning cannot
   commit to a competing class either.
2. **No unsupported cue.** A few reasonings are sampled; each sentence is read by
   :func:`esva.llm.cues.check_sentence`; the candidate with the most supported cue claims and no
   failing sentence wins, and a sentence with an unsupported claim is never shipped (dropped).
   When no generated sentence survives, the cue sentences of :func:`esva.llm.cues.cue_sentences`
   (true by construction) stand in, and the result says so (``source: "cues"``).

The LM also gives a second opinion for free: the log-probability of each class word in the
conclusion slot (``lm_scores``), reported beside the recogniser's probabilities.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from esva.llm.cues import ClipCueSet, check_sentence, claims, cue_sentences, split_sentences

CONCLUSION = "Therefore, the emotion is {label}."
ANSWER = "The emotion is {label}."  # task "emotion": the answer alone, no reasoning
SYSTEM = (
    "You explain the result of an emotion recogniser to a user. Use only the measurements "
    "given. Write two short sentences about what the measurements show."
)
TASK_QUESTION = {
    "reason": "Explain which of these measurements support the answer {label}.",
    "voice": "Explain what the voice measurements say about the answer {label}.",
    "face": "Explain what the face measurements say about the answer {label}.",
}


@dataclass
class Explanation:
    text: str  # what is shipped: kept sentences + the force-decoded conclusion
    sentences: list[dict[str, Any]]  # each kept sentence with the cue claims it rests on
    dropped: list[dict[str, Any]]  # generated sentences that failed the checker
    source: str  # "lm" | "cues" (no generated sentence survived) | "none" (task emotion)
    conclusion_logprob: float  # the forced clause's label tokens under the LM
    lm_scores: dict[str, float] = field(default_factory=dict)  # class -> log p in the slot
    candidates: int = 0


def prompt_messages(
    cues: ClipCueSet,
    label: str,
    probabilities: dict[str, float],
    task: str,
    modalities: tuple[str, ...],
) -> list[dict[str, str]]:
    """The chat for the LM: the measured cues, the recogniser's answer, the question."""
    top = sorted(probabilities.items(), key=lambda kv: -kv[1])[:3]
    answer = ", ".join(f"{k} {100 * v:.0f}%" for k, v in top)
    lines = [f"- {line}" for line in cues.lines(modalities)] or ["- (no cue was measured)"]
    user = (
        "Measurements of a clip:\n"
        + "\n".join(lines)
        + f"\nThe recogniser's answer: {answer}.\n"
        + TASK_QUESTION.get(task, TASK_QUESTION["reason"]).format(label=label)
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def _prompt_ids(tokenizer, messages, lead: str = "") -> torch.Tensor:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text + lead, return_tensors="pt", add_special_tokens=False).input_ids


def lead_words(cues: ClipCueSet, modalities: Sequence[str]) -> str:
    """The forced first words of the answer: they point the LM at a measured cue (voice first,
    then face), so that it explains from the measurements rather than restating the answer."""
    if "voice" in modalities and cues.voice:
        return f"Compared with {cues.voice_reference}, the voice"
    if "face" in modalities and cues.face is not None:
        return "The face"
    return ""


def banned_words(tokenizer, words: Sequence[str]) -> list[list[int]]:
    """Token sequences of ``words`` as the tokenizer writes them mid-sentence and capitalised."""
    out: list[list[int]] = []
    for word in words:
        for form in {word, word.capitalize(), " " + word, " " + word.capitalize()}:
            ids = tokenizer(form, add_special_tokens=False).input_ids
            if ids and ids not in out:
                out.append(ids)
    return out


class _Sentences:
    """Stop sampling once every sequence has written ``n`` whole sentences (or the end)."""

    def __init__(self, tokenizer, start: int, n: int):
        self.tokenizer, self.start, self.n = tokenizer, start, n

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start :], skip_special_tokens=False)
        done = [
            len(re.findall(r"[.!?](?:\s|$)", t.split("\n\n")[0])) >= self.n
            or "\n\n" in t
            or (self.tokenizer.eos_token or "\0") in t
            for t in texts
        ]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def sample_reasonings(
    model,
    tokenizer,
    prompt_ids: torch.Tensor,
    *,
    banned: list[list[int]],
    n: int = 3,
    max_new_tokens: int = 48,
    seed: int = 0,
    sentences: int = 2,
    lead: str = "",
    repetition_penalty: float = 1.2,
    prompt_cache=None,
) -> list[str]:
    """``n`` sampled reasonings (one batched ``generate``), the other classes' names banned.

    ``prompt_ids`` end with the forced ``lead`` words; each returned text starts with them.
    ``prompt_cache``: the KV cache of a prefix of ``prompt_ids`` (:func:`prefill`), shared by
    the ``n`` rows so the prompt is read once, not once per sample."""
    from transformers import StoppingCriteriaList

    rows, kwargs = prompt_ids, {"num_return_sequences": n}
    if prompt_cache is not None:
        cache = copy.deepcopy(prompt_cache)
        cache.batch_repeat_interleave(n)
        rows, kwargs = prompt_ids.repeat(n, 1), {_cache_arg(model): cache}
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        out = model.generate(
            rows,
            attention_mask=torch.ones_like(rows),
            do_sample=True,
            temperature=0.7,
            top_p=0.9,
            repetition_penalty=repetition_penalty,
            max_new_tokens=max_new_tokens,
            **kwargs,
            bad_words_ids=banned or None,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            stopping_criteria=StoppingCriteriaList(
                [_Sentences(tokenizer, prompt_ids.shape[1], sentences)]
            ),
        )
    texts = tokenizer.batch_decode(out[:, prompt_ids.shape[1] :], skip_special_tokens=True)
    texts = [t.split("\n\n")[0].rstrip() for t in texts]
    if not lead:
        return [t.strip() for t in texts]
    # The lead was tokenised without a trailing space: the LM's first token carries it.
    return [(lead + t).strip() for t in texts]


def _complete(sentences: list[str]) -> list[str]:
    """Whole sentences only: a fragment cut by the token limit is not a sentence."""
    return [s for s in sentences if s[-1:] in ".!?"]


def select(candidates: Sequence[str], cues: ClipCueSet) -> tuple[list[str], list[dict], int]:
    """(kept sentences, dropped sentences with why, index of the chosen candidate).

    Score: supported cue claims of the kept sentences, minus a large penalty per failing
    sentence; ties keep the earlier candidate.
    """
    best: tuple[float, int, list[str], list[dict]] | None = None
    for i, text in enumerate(candidates):
        kept, dropped, support = [], [], 0
        parts = split_sentences(text)
        for s in parts[len(_complete(parts)) :]:  # cut by the token limit mid-sentence
            dropped.append({"sentence": s, "unsupported": [], "why": "unfinished"})
        for s in _complete(parts):
            bad = check_sentence(s, cues)
            if s in kept:  # a repeated sentence says nothing new
                dropped.append({"sentence": s, "unsupported": [], "why": "repeated"})
            elif bad:
                why = "unsupported cue"
                dropped.append({"sentence": s, "unsupported": [vars(c) for c in bad], "why": why})
            else:
                kept.append(s)
                support += len(claims(s, cues))
        failed = sum(d["why"] != "unfinished" for d in dropped)
        score = support + 0.1 * len(kept) - 10.0 * failed
        if best is None or score > best[0]:
            best = (score, i, kept, dropped)
    if best is None:
        return [], [], -1
    return best[2], best[3], best[1]


def _cache_arg(model) -> str:
    """The forward argument that takes a KV cache (transformers 5.x renames it ``cache``)."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


CACHE_RENAME_WARNING = "`past_key_values`/`cache_params` are deprecated"


class _DropCacheRename(logging.Filter):
    """Drops transformers' notice that ``past_key_values`` is now ``cache``: it is about
    transformers' own API and was printed into ``esva explain``'s output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return CACHE_RENAME_WARNING not in record.getMessage()


logging.getLogger("transformers.utils.generic").addFilter(_DropCacheRename())


def output_cache(out):
    """The KV cache in a forward's output, read by its current name (transformers 5 renamed
    ``past_key_values`` to ``cache``; the old name still works but logs a warning)."""
    cache = out.get("cache") if hasattr(out, "get") else None
    return cache if cache is not None else out.past_key_values


def prefill(model, prompt_ids: torch.Tensor):
    """The KV cache of ``prompt_ids`` (read once, then shared by sampling and the conclusion)."""
    with torch.no_grad():
        return output_cache(model(input_ids=prompt_ids, use_cache=True))


def force_conclusion(
    model,
    tokenizer,
    prompt_ids: torch.Tensor,
    reasoning: str,
    label: str,
    classes: Sequence[str],
    clause: str = CONCLUSION,
    score_classes: bool = True,
    prompt_cache=None,
) -> tuple[str, float, dict[str, float]]:
    """Force-decode ``clause`` after ``reasoning``: (the decoded reasoning + clause, the label
    tokens' log-prob, each class word's log-prob in the label slot; the label's alone when not
    ``score_classes``). ``prompt_cache``: :func:`prefill` of ``prompt_ids``, so that only the
    reasoning and the clause are read here."""
    prefix, suffix = clause.split("{label}")
    # "... the emotion is" + " happy.": the label with its leading space, as BPE writes words.
    head = (reasoning + " " if reasoning else "") + prefix.rstrip()
    head_ids = tokenizer(head, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():  # the shared context once; each class word continues its cache
        if prompt_cache is not None:
            past = {_cache_arg(model): copy.deepcopy(prompt_cache)}
            out = model(input_ids=head_ids, use_cache=True, **past)
        else:
            out = model(input_ids=torch.cat([prompt_ids, head_ids], dim=1), use_cache=True)
    first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
    scores: dict[str, float] = {}
    forced: list[int] = []
    for cls in dict.fromkeys([label, *classes] if score_classes else [label]):
        ids = tokenizer(" " + cls + suffix, add_special_tokens=False).input_ids
        lp = float(first[ids[0]])
        if len(ids) > 1:
            with torch.no_grad():
                past = {_cache_arg(model): copy.deepcopy(output_cache(out))}
                rest = model(input_ids=torch.tensor([ids[:-1]]), use_cache=True, **past).logits[0]
            logp = torch.log_softmax(rest.float(), dim=-1)
            lp += sum(float(logp[k, t]) for k, t in enumerate(ids[1:]))
        scores[cls] = lp
        if cls == label:
            forced = ids
    text = tokenizer.decode(head_ids[0].tolist() + forced, skip_special_tokens=True)
    return text.strip(), scores[label], {c: scores[c] for c in classes if c in scores}


def explain_with_model(
    model,
    tokenizer,
    cues: ClipCueSet,
    label: str,
    probabilities: dict[str, float],
    *,
    task: str = "reason",
    modalities: tuple[str, ...] = ("voice", "face", "words"),
    samples: int = 3,
    max_new_tokens: int = 48,
    seed: int = 0,
    repetition_penalty: float = 1.2,
    score_classes: bool = True,
) -> Explanation:
    """The explanation of ``label`` from ``cues`` (see the module doc).

    ``repetition_penalty`` keeps a base LM from looping; a model tuned to restate the measured
    cues (the shipped adapter) is given 1.0, since the penalty pushes it off the very words of
    the cues in its prompt. ``score_classes=False`` scores only the label in the conclusion
    slot (the adapter's second opinion is the independent one)."""
    classes = list(probabilities)
    messages = prompt_messages(cues, label, probabilities, task, modalities)
    lead = lead_words(cues, modalities) if task != "emotion" else ""
    prompt_ids = _prompt_ids(tokenizer, messages)
    cache = prefill(model, prompt_ids)
    kept: list[str] = []
    dropped: list[dict] = []
    source = "none"
    n = 0
    if task != "emotion":
        others = [c for c in classes if c.lower() != label.lower()]
        # The lead is tokenised on its own after the prompt, as training tokenised the answer
        # apart from the prompt; the prompt's cache is then shared (sampling needs one new token
        # at least, so without a lead the prompt is read again).
        lead_ids = tokenizer(lead, add_special_tokens=False, return_tensors="pt").input_ids
        candidates = sample_reasonings(
            model,
            tokenizer,
            torch.cat([prompt_ids, lead_ids], dim=1),
            prompt_cache=cache if lead_ids.shape[1] else None,
            lead=lead,
            banned=banned_words(tokenizer, others),
            n=samples,
            max_new_tokens=max_new_tokens,
            seed=seed,
            repetition_penalty=repetition_penalty,
        )
        n = len(candidates)
        kept, dropped, _ = select(candidates, cues)
        source = "lm"
        if not kept:
            fallback = [s for s in cue_sentences(cues, modalities) if not check_sentence(s, cues)]
            kept, source = fallback, "cues"
    reasoning = " ".join(kept)
    text, logprob, scores = force_conclusion(
        model,
        tokenizer,
        prompt_ids,
        reasoning,
        label,
        classes,
        ANSWER if task == "emotion" else CONCLUSION,
        score_classes,
        prompt_cache=cache,
    )
    sentences = [{"sentence": s, "claims": [vars(c) for c in claims(s, cues)]} for s in kept]
    return Explanation(text, sentences, dropped, source, logprob, scores, n)
