"""``EmotionLLM``: feature streams -> projector tokens -> a LoRA-tuned causal LM -> answers.

The Emotion-LLaMA recipe on ESVA's features::

    features {stream: (B,T,D), mask}  --FeatureProjector-->  k tokens per stream (B,k,H)
    prompt text with <StreamHere> placeholders --chat template--> assemble() --> inputs_embeds
    inputs_embeds --LM (frozen) + LoRA (trained)--> answer tokens

``forward`` returns the language-modelling loss of the answers (prompt and feature positions
carry none), ``generate`` decodes answers greedily; both go through :meth:`EmotionLLM.prepare`,
so a model is evaluated on exactly the inputs it was trained on. ``save_pretrained`` writes ONE
directory (LoRA adapters by peft, projector weights, the config and a fingerprint of the base
LM); ``from_pretrained`` rebuilds the model on the same base LM and refuses another one.

The features can be raw encoder streams from a feature batch (:func:`features_from_batch`) or
the frame-level streams of a trained ESVA model (``ESVAModel(batch).frames``: audio after MSFE,
visual, text, and the aligned ``joint`` stream), which have the same ``{stream: (x, mask)}``
form.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from esva.errors import EsvaError
from esva.io import atomic_dir, read_json, write_json
from esva.llm.backbone import (
    DEFAULT_BACKBONE,
    fingerprint,
    fingerprint_mismatch,
    load_backbone,
    torch_dtype,
)
from esva.llm.lora import LoraSettings, apply_lora, check_lora_only, quiet_peft
from esva.llm.projector import FeatureProjector, ProjectorConfig, Stream
from esva.llm.prompt import IGNORE_INDEX, Assembly, assemble, build_prompts, chat_wrap
from esva.settings import config_from_dict

CONFIG_NAME = "esva_llm.json"
PROJECTOR_NAME = "projector.safetensors"
FORMAT = "esva-llm/1"


@dataclass
class EmotionLLMConfig:
    """Everything needed to rebuild an :class:`EmotionLLM` around its base LM."""

    streams: dict[str, int]  # feature stream -> width, e.g. {"audio": 128, "joint": 128}
    tokens: int | dict[str, int] = 1  # tokens per stream: 1 = utterance level, k = k segments
    backbone: str = DEFAULT_BACKBONE  # esva name, local model directory or .gguf file
    dtype: str = "float32"  # of the LM weights ("bfloat16"/"float16" for LLaMA-2-7B on a GPU)
    autocast: str | None = None  # "bfloat16": mixed-precision LM passes (GPUs, CPUs with AMX)
    lora: LoraSettings = field(default_factory=LoraSettings)
    system_prompt: str | None = None  # None: the chat template's own default
    max_length: int = 1024  # prompt + answer tokens; longer answers are cut in training
    max_new_tokens: int = 128

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):
            self.lora = LoraSettings(**self.lora)
        self.streams = {str(k): int(v) for k, v in self.streams.items()}
        torch_dtype(self.dtype)
        if self.autocast is not None:
            torch_dtype(self.autocast)
        self.projector_config()  # validates streams and tokens

    def projector_config(self, lm_dim: int = 1) -> ProjectorConfig:
        return ProjectorConfig(dict(self.streams), lm_dim, self.tokens)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str | Path | None = None) -> EmotionLLMConfig:
        return config_from_dict(cls, data, "LLM config", source)


@dataclass
class LLMOutput:
    loss: torch.Tensor  # mean cross-entropy over the answer tokens of the batch
    logits: torch.Tensor  # (N, vocab): at the N positions that predict an answer token
    n_tokens: int  # N


def features_from_batch(batch: Mapping[str, Any], streams: Sequence[str]) -> dict[str, Stream]:
    """``{stream: (x, mask)}`` of the given streams that a collated feature batch has."""
    return {s: (batch[s], batch[f"{s}_mask"]) for s in streams if s in batch}


class EmotionLLM(nn.Module):
    """Projectors + a LoRA-wrapped causal LM; made by :meth:`build` or :meth:`from_pretrained`."""

    def __init__(self, config: EmotionLLMConfig, lm, tokenizer, backbone: dict) -> None:
        super().__init__()
        self.config = config
        self.lm = lm  # a peft PeftModelForCausalLM
        self.tokenizer = tokenizer
        self.backbone = backbone  # fingerprint of the base LM (see esva.llm.backbone)
        lm_dim = lm.get_input_embeddings().weight.shape[1]
        self.projector = FeatureProjector(config.projector_config(lm_dim))

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def build(
        cls, config: EmotionLLMConfig, *, lm=None, tokenizer=None, download: bool = True
    ) -> EmotionLLM:
        """A new model: the base LM of ``config.backbone`` (or ``lm``) with fresh adapters."""
        if lm is None:
            lm, tokenizer = load_backbone(config.backbone, config.dtype, download=download)
        backbone = fingerprint(lm)
        return cls(config, apply_lora(lm, config.lora), tokenizer, backbone)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        *,
        backbone: str | None = None,
        dtype: str | None = None,
        trainable: bool = False,
        download: bool = True,
    ) -> EmotionLLM:
        """Reload a :meth:`save_pretrained` directory onto its base LM.

        ``backbone`` overrides where the base LM is found (e.g. LLaMA-2 moved to another path);
        it must still be the same LM, or this raises an :class:`EsvaError`. ``dtype`` overrides
        the LM weights' dtype (e.g. float32 on a CPU for a model tuned in bfloat16 on a GPU).
        """
        from peft import PeftModel

        directory = Path(directory)
        meta = read_json(directory / CONFIG_NAME)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise EsvaError(f"not an esva LLM directory (format is not {FORMAT})", directory)
        config = EmotionLLMConfig.from_dict(meta.get("config"), directory / CONFIG_NAME)
        if backbone is not None:
            config.backbone = backbone
        if dtype is not None:
            torch_dtype(dtype)
            config.dtype = dtype
        lm, tokenizer = load_backbone(config.backbone, config.dtype, download=download)
        why = fingerprint_mismatch(meta.get("backbone", {}), fingerprint(lm))
        if why is not None:
            raise EsvaError(
                f"saved for another language model: backbone {config.backbone!r} {why}", directory
            )
        saved_backbone = meta["backbone"]
        try:
            with quiet_peft():
                peft_model = PeftModel.from_pretrained(lm, directory, is_trainable=trainable)
        except (OSError, ValueError, RuntimeError) as exc:
            raise EsvaError(f"cannot load the LoRA adapters ({exc})", directory) from None
        if trainable:
            check_lora_only(peft_model)
        model = cls(config, peft_model, tokenizer, saved_backbone)
        model._load_projector(directory / PROJECTOR_NAME)
        model.projector.requires_grad_(trainable)
        return model

    def _load_projector(self, path: Path) -> None:
        if not path.exists():
            raise EsvaError("projector weights missing", path)
        state = load_file(path)
        expected = self.projector.state_dict()
        bad = sorted(
            set(state) ^ set(expected)
            | {k for k in set(state) & set(expected) if state[k].shape != expected[k].shape}
        )
        if bad:
            raise EsvaError(f"projector weights do not fit the config (keys {bad})", path)
        self.projector.load_state_dict(state)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Adapters, projector weights and config as ONE directory, written atomically."""
        directory = Path(directory)
        with atomic_dir(directory) as tmp:
            self.lm.save_pretrained(str(tmp))  # adapter_config.json, adapter_model.safetensors
            state = self.projector.state_dict()
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in state.items()},
                str(tmp / PROJECTOR_NAME),
            )
            write_json(
                tmp / CONFIG_NAME,
                {"format": FORMAT, "config": self.config.to_dict(), "backbone": self.backbone},
            )
        return directory

    # --- the one input path ----------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        """The projector and LoRA parameters: all an optimizer should see."""
        return [p for p in self.parameters() if p.requires_grad]

    def prompts(
        self,
        template: str,
        features: Mapping[str, Stream],
        sentences: Sequence[str | None] | None = None,
        labels: Sequence[str] | None = None,
    ) -> list[str]:
        """Per-sample user prompts (see :func:`esva.llm.prompt.build_prompts`)."""
        kwargs = {"labels": labels} if labels is not None else {}
        return build_prompts(template, features, sentences, **kwargs)

    def prepare(
        self,
        features: Mapping[str, Stream],
        prompts: Sequence[str],
        targets: Sequence[str] | None = None,
    ) -> Assembly:
        """Project features, wrap prompts in the chat template and assemble ``inputs_embeds``.

        Used by :meth:`forward` (with targets) and :meth:`generate` (without): the generation
        input of a sample is exactly the prompt part of its training input.
        """
        tokens = self.projector(features)
        answers = list(targets) if targets is not None else [None] * len(prompts)
        if len(answers) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(answers)} targets")
        wrapped = [
            chat_wrap(self.tokenizer, p, a, self.config.system_prompt)
            for p, a in zip(prompts, answers, strict=True)
        ]
        return assemble(
            self.tokenizer,
            self.lm.get_input_embeddings(),
            [w[0] for w in wrapped],
            tokens,
            None if targets is None else [w[1] for w in wrapped],
            self.config.max_length,
        )

    def _autocast(self):
        if self.config.autocast is None:
            return contextlib.nullcontext()
        device = self.lm.get_input_embeddings().weight.device.type
        return torch.autocast(device, dtype=torch_dtype(self.config.autocast))

    # --- training and inference ------------------------------------------------------------
    def forward(
        self, features: Mapping[str, Stream], prompts: Sequence[str], targets: Sequence[str]
    ) -> LLMOutput:
        """Mean cross-entropy of the answer tokens given features and prompts."""
        batch = self.prepare(features, prompts, targets)
        base = self.lm.get_base_model()  # LoRA layers are injected in place: they run here
        with self._autocast():
            hidden = base.get_decoder()(
                inputs_embeds=batch.inputs_embeds,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                use_cache=False,
            ).last_hidden_state
            # Position t predicts token t+1. Only answer tokens are scored, so the (large)
            # output projection runs on them alone instead of on the whole prompt.
            labels = batch.labels[:, 1:]
            scored = labels != IGNORE_INDEX
            logits = base.get_output_embeddings()(hidden[:, :-1][scored])
        logits = logits.float()
        n = int(scored.sum())
        if n == 0:
            raise EsvaError("no answer tokens to train on (empty targets, or max_length too small)")
        return LLMOutput(F.cross_entropy(logits, labels[scored]), logits, n)

    @torch.no_grad()
    def generate(
        self,
        features: Mapping[str, Stream],
        prompts: Sequence[str],
        max_new_tokens: int | None = None,
        **generate_kwargs: Any,
    ) -> list[str]:
        """Greedy answers (pass ``do_sample=True`` etc. to sample), one string per sample."""
        was_training = self.training
        self.eval()
        try:
            batch = self.prepare(features, prompts)
            kwargs = {
                "max_new_tokens": max_new_tokens or self.config.max_new_tokens,
                "do_sample": False,
                "pad_token_id": self.tokenizer.pad_token_id,
                "eos_token_id": self.tokenizer.eos_token_id,
                **generate_kwargs,
            }
            if not kwargs["do_sample"]:  # silence the "temperature is ignored" warnings
                kwargs.update(temperature=None, top_p=None, top_k=None)
            with self._autocast():
                # Position ids are derived from the attention mask by generate() exactly as
                # assemble() does (cumsum - 1), so they need not be passed.
                out = self.lm.generate(
                    inputs_embeds=batch.inputs_embeds,
                    attention_mask=batch.attention_mask,
                    **kwargs,
                )
        finally:
            self.train(was_training)
        # With inputs_embeds only, generate() returns just the new tokens.
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]
