"""LoRA on the language model through peft: only the adapters (and the projectors) train.

The defaults are Emotion-LLaMA's (MiniGPT-v2's): rank 64, alpha 16, dropout 0.05 on the query
and value projections of every attention layer. ``get_peft_model`` freezes every weight of the
base model; :func:`apply_lora` checks that nothing else is left trainable, so an optimizer built
from ``requires_grad`` parameters can never touch the base LM.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field

from torch import nn

from esva.errors import EsvaError


@dataclass
class LoraSettings:
    """peft ``LoraConfig`` options (names as in the LoRA paper: r, alpha)."""

    r: int = 64
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])

    def __post_init__(self) -> None:
        self.target_modules = [str(m) for m in self.target_modules]
        if self.r < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1 or not self.target_modules:
            raise EsvaError(
                f"invalid LoRA settings: r={self.r} (>= 1), alpha={self.alpha} (> 0), "
                f"dropout={self.dropout} ([0, 1)), target_modules={self.target_modules} (non-empty)"
            )

    def to_peft(self):
        from peft import LoraConfig, TaskType

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            bias="none",
            task_type=TaskType.CAUSAL_LM,
        )


@contextlib.contextmanager
def quiet_peft():
    """Hide the FutureWarning peft triggers by calling a transformers API deprecated in v5."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        yield


def apply_lora(model: nn.Module, settings: LoraSettings):
    """Wrap a causal LM with fresh LoRA adapters; everything but the adapters is frozen."""
    from peft import get_peft_model

    model.requires_grad_(False)
    try:
        with quiet_peft():
            peft_model = get_peft_model(model, settings.to_peft())
    except ValueError as exc:  # e.g. target modules that this architecture does not have
        raise EsvaError(f"cannot add LoRA adapters to the language model: {exc}") from None
    check_lora_only(peft_model)
    return peft_model


def check_lora_only(model: nn.Module) -> None:
    """Raise when a parameter other than a LoRA matrix would train (a peft or config bug)."""
    stray = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
    if stray:
        raise RuntimeError(f"non-LoRA language-model parameters are trainable: {stray[:5]}")
