"""Prompts with feature placeholders, the LM's chat template, and ONE assembly by ``inputs_embeds``.

A prompt is plain text with a placeholder per feature stream, e.g. Emotion-LLaMA's recognition
prompt in ESVA's streams::

    <audio><AudioHere></audio> <joint><JointHere></joint> The person in video says: ... .
    [emotion] Please determine which emotion label in the video represents: happy, sad, ...

It is wrapped with the language model's own chat template (``tokenizer.apply_chat_template``),
then :func:`assemble` tokenises the text between placeholders, looks the tokens up in the LM's
embedding table and splices each stream's projected feature tokens in at its placeholder. The
result is fed to the LM as ``inputs_embeds``.

Training and generation call the same :func:`assemble`; training only appends the answer tokens
(and their labels) after the prompt. Emotion-LLaMA (MiniGPT-v2 code) does not: its training
splices features at two placeholders while generation uses one, so the model is evaluated on
inputs it never saw. Here the generation input is, token for token, the prefix of the training
input (``tests/test_llm_prompt.py`` checks it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from esva.errors import EsvaError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label of positions that carry no loss (prompt, features, padding)

# Emotion-LLaMA's label list in its recognition prompt (MER2023 six + three of its own), in the
# order of its prompt (minigpt4/datasets/datasets/first_face.py).
EMOTION_LLAMA_LABELS: tuple[str, ...] = (
    "happy", "sad", "neutral", "angry", "worried", "surprise", "fear", "contempt", "doubt",
)  # fmt: skip

# Templates: {features} becomes one "<stream><StreamHere></stream>" block per stream, {subtitle}
# the transcript sentence (or nothing), {labels} the comma-separated class names. The wording
# after the features is Emotion-LLaMA's (task tag in brackets, then the instruction).
SUBTITLE = "The person in video says: {sentence}. "
RECOGNITION_TEMPLATE = (
    "{features} {subtitle}[emotion] Please determine which emotion label in the video "
    "represents: {labels}."
)
REASONING_TEMPLATE = (
    "{features} {subtitle}[reason] Please analyze all the clues in the video and reason out "
    "the emotional label of the person in the video."
)
TEMPLATES: dict[str, str] = {"recognition": RECOGNITION_TEMPLATE, "reasoning": REASONING_TEMPLATE}

# Used only for a tokenizer that has no chat template of its own (a base, non-chat LM).
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_PLACEHOLDER = re.compile(r"<([A-Z][a-z]*)Here>")


def placeholder(stream: str) -> str:
    """The placeholder of a stream: ``"audio"`` -> ``"<AudioHere>"``."""
    return f"<{stream.capitalize()}Here>"


def feature_block(streams: Sequence[str]) -> str:
    """``"<audio><AudioHere></audio> <joint><JointHere></joint>"`` for the given streams."""
    return " ".join(f"<{s}>{placeholder(s)}</{s}>" for s in streams)


def build_prompt(
    template: str,
    streams: Sequence[str],
    sentence: str | None = None,
    labels: Sequence[str] = EMOTION_LLAMA_LABELS,
) -> str:
    """The user message of one sample: a template (or a key of :data:`TEMPLATES`) filled in.

    ``streams`` are the feature streams this sample has (a clip without a face gets no visual
    block). Placeholder look-alikes in the transcript are removed so that spoken text can never
    pull feature tokens in.
    """
    template = TEMPLATES.get(template, template)
    sentence = " ".join(_PLACEHOLDER.sub("", sentence or "").split()).rstrip(". ")
    subtitle = SUBTITLE.format(sentence=sentence) if sentence else ""
    text = template.format(
        features=feature_block(streams), subtitle=subtitle, labels=", ".join(labels)
    )
    return " ".join(text.split())  # no double spaces where a part was empty


def build_prompts(
    template: str,
    features: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    sentences: Sequence[str | None] | None = None,
    labels: Sequence[str] = EMOTION_LLAMA_LABELS,
) -> list[str]:
    """:func:`build_prompt` for each sample of a batch, with the streams that sample has.

    features: ``{stream: (x (B,T,D), mask (B,T))}``; a stream whose mask is all False for a
    sample (no face found, no speech) gets no block in that sample's prompt.
    """
    if not features:
        raise EsvaError("no feature streams to build prompts for")
    b = next(iter(features.values()))[1].shape[0]
    sentences = list(sentences) if sentences is not None else [None] * b
    if len(sentences) != b:
        raise ValueError(f"{b} samples but {len(sentences)} sentences")
    present = {s: mask.bool().any(dim=1).tolist() for s, (_, mask) in features.items()}
    return [
        build_prompt(template, [s for s in features if present[s][i]], sentences[i], labels)
        for i in range(b)
    ]


def chat_wrap(
    tokenizer, user: str, answer: str | None = None, system: str | None = None
) -> tuple[str, str | None]:
    """``(prompt, target)`` texts in the LM's chat template.

    ``prompt`` ends with the template's generation prompt (what the model sees before it
    answers); ``target`` is what the template puts after it for ``answer`` (the answer and the
    end-of-turn token), None when no answer is given. Both come from the same conversation, so
    ``prompt + target`` is exactly the templated training dialogue.
    """
    if not getattr(tokenizer, "chat_template", None):
        log.warning("tokenizer has no chat template; using ChatML")
        tokenizer.chat_template = CHATML_TEMPLATE
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages.append({"role": "user", "content": user})
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if answer is None:
        return prompt, None
    full = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": answer}], tokenize=False
    )
    if full.startswith(prompt):
        target = full[len(prompt) :].rstrip("\n")
    else:  # a template whose generation prompt is not a prefix of the dialogue (rare)
        target = answer + (tokenizer.eos_token or "")
    return prompt, target


@dataclass
class Assembly:
    """A padded batch ready for the LM (left padding, as generation needs)."""

    inputs_embeds: torch.Tensor  # (B, L, H)
    attention_mask: torch.Tensor  # (B, L) long
    position_ids: torch.Tensor  # (B, L): 0.. over the real tokens, as generate() derives them
    token_ids: torch.Tensor  # (B, L) long: the text token ids; -1 at feature and pad positions
    labels: torch.Tensor | None  # (B, L) long: answer token ids, IGNORE_INDEX elsewhere
    feature_spans: list[dict[str, tuple[int, int]]]  # per sample: stream -> [start, end)
    prompt_lengths: list[int]  # per sample: real positions before the answer


def _split(text: str, streams: set[str]) -> list[tuple[str, str]]:
    """``[("text", ...), ("feature", stream), ...]`` in order; a placeholder may occur once."""
    parts: list[tuple[str, str]] = []
    seen: set[str] = set()
    pos = 0
    for match in _PLACEHOLDER.finditer(text):
        stream = match.group(1).lower()
        if stream not in streams:
            raise EsvaError(
                f"prompt has placeholder {match.group(0)} but there is no {stream!r} feature "
                f"stream (streams: {sorted(streams)})"
            )
        if stream in seen:
            raise EsvaError(f"prompt has placeholder {match.group(0)} more than once")
        seen.add(stream)
        parts.append(("text", text[pos : match.start()]))
        parts.append(("feature", stream))
        pos = match.end()
    parts.append(("text", text[pos:]))
    return [p for p in parts if p != ("text", "")]


def assemble(
    tokenizer,
    embed: nn.Module,
    prompts: Sequence[str],
    features: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    targets: Sequence[str] | None = None,
    max_length: int | None = None,
) -> Assembly:
    """Embed chat-wrapped prompts with feature tokens spliced in at their placeholders.

    prompts: B texts (from :func:`chat_wrap`); features: ``{stream: (tokens (B,k,H), mask
    (B,k))}`` from the projector, only the valid tokens of each sample are used; targets: B
    answer texts for training (their tokens follow the prompt and are the only labelled
    positions), or None for generation. ``max_length`` cuts the answer, never the prompt.
    """
    if targets is not None and len(targets) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    weight = embed.weight
    rows: list[tuple[torch.Tensor, list[int], list[int], dict[str, tuple[int, int]], int]] = []
    for i, prompt in enumerate(prompts):
        pieces: list[torch.Tensor] = []
        ids: list[int] = []
        spans: dict[str, tuple[int, int]] = {}
        for kind, value in _split(prompt, set(features)):
            if kind == "text":
                tok = tokenizer(value, add_special_tokens=False)["input_ids"]
                ids += tok
                pieces.append(embed(torch.tensor(tok, dtype=torch.long, device=weight.device)))
            else:
                tokens, mask = features[value]
                valid = tokens[i][mask[i].bool()].to(weight.dtype)
                spans[value] = (len(ids), len(ids) + len(valid))
                ids += [-1] * len(valid)
                pieces.append(valid)
        n_prompt = len(ids)
        if max_length is not None and n_prompt > max_length:
            raise EsvaError(
                f"prompt {i} is {n_prompt} tokens long, more than max_length={max_length}"
            )
        labels = [IGNORE_INDEX] * n_prompt
        if targets is not None:
            tok = tokenizer(targets[i], add_special_tokens=False)["input_ids"]
            if max_length is not None:
                tok = tok[: max_length - n_prompt]
            ids += tok
            labels += tok
            pieces.append(embed(torch.tensor(tok, dtype=torch.long, device=weight.device)))
        rows.append((torch.cat(pieces), ids, labels, spans, n_prompt))

    # Left padding: every sample's last real token sits at the end, where generation continues.
    length = max(len(r[1]) for r in rows)
    b, h = len(rows), weight.shape[1]
    inputs_embeds = weight.new_zeros(b, length, h)
    attention_mask = torch.zeros(b, length, dtype=torch.long, device=weight.device)
    token_ids = torch.full((b, length), -1, dtype=torch.long, device=weight.device)
    labels = torch.full((b, length), IGNORE_INDEX, dtype=torch.long, device=weight.device)
    feature_spans, prompt_lengths = [], []
    for i, (emb, ids, lab, spans, n_prompt) in enumerate(rows):
        pad = length - len(ids)
        inputs_embeds[i, pad:] = emb
        attention_mask[i, pad:] = 1
        token_ids[i, pad:] = torch.tensor(ids, dtype=torch.long)
        labels[i, pad:] = torch.tensor(lab, dtype=torch.long)
        feature_spans.append({s: (a + pad, e + pad) for s, (a, e) in spans.items()})
        prompt_lengths.append(n_prompt)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return Assembly(
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        position_ids=position_ids,
        token_ids=token_ids,
        labels=labels if targets is not None else None,
        feature_spans=feature_spans,
        prompt_lengths=prompt_lengths,
    )
