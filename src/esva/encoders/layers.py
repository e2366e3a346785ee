"""Which transformer layer(s) an encoder's features come from: one rule for every encoder.

Self-supervised encoders (HuBERT, wav2vec 2.0, WavLM, MAE, CLIP, ...) carry different information
in different layers: for emotion, the middle-to-upper layers of a speech model usually beat its
last layer, which is tuned to the pre-training target. So every transformer encoder in esva takes
the same ``layer=`` option, resolved here:

``"last"``
    The model's ``last_hidden_state`` (its final output, final norm included where the model has
    one, e.g. ViT-MAE's ``layernorm``).
``int`` (or its string, ``"8"``, ``"-2"``)
    One entry of the model's ``hidden_states`` tuple. Index 0 is the embedding output that feeds
    the first transformer block, index ``num_layers`` the last block's output; negative indices
    count from the end, as in Python.
``"A..B"`` (e.g. ``"-4..-1"``, ``"6..9"``)
    The mean of ``hidden_states[A]`` ... ``hidden_states[B]``, both ends included: MERTools'
    convention for its "last four layers" features.
``"learned"``
    A softmax-weighted sum of all ``hidden_states`` with one trainable weight per layer (the
    SUPERB benchmark's recipe), for setups that fine-tune the weighting with a downstream head.
    The weights start equal, so before training it is the mean of all layers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from esva.errors import EsvaError

_RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*$")
_INT = re.compile(r"^\s*-?\d+\s*$")


@dataclass(frozen=True)
class LayerSpec:
    """A parsed ``layer=`` option (see the module docstring for the forms)."""

    kind: str  # "last" | "index" | "range" | "learned"
    start: int = 0  # index, or the first index of a range
    stop: int = 0  # last index of a range (inclusive); equals ``start`` for "index"

    @classmethod
    def parse(cls, layer: str | int | LayerSpec) -> LayerSpec:
        """Parse ``"last"``, an int, ``"A..B"`` or ``"learned"``; anything else is a user error."""
        if isinstance(layer, LayerSpec):
            return layer
        if isinstance(layer, bool):  # bool is an int subclass: True would silently mean layer 1
            raise EsvaError(f"layer must be 'last', an int, 'A..B' or 'learned', not {layer!r}")
        if isinstance(layer, int):
            return cls("index", layer, layer)
        text = str(layer).strip().lower()
        if text == "last":
            return cls("last")
        if text == "learned":
            return cls("learned")
        if _INT.match(text):
            return cls("index", int(text), int(text))
        match = _RANGE.match(text)
        if match:
            return cls("range", int(match.group(1)), int(match.group(2)))
        raise EsvaError(f"layer must be 'last', an int, 'A..B' or 'learned', not {layer!r}")

    @property
    def needs_hidden_states(self) -> bool:
        """Whether the model must be run with ``output_hidden_states=True``."""
        return self.kind != "last"

    def indices(self, num_states: int) -> list[int]:
        """The non-negative ``hidden_states`` indices this spec averages (checked against range).

        ``num_states`` is ``len(hidden_states)``, i.e. ``num_hidden_layers + 1``.
        """
        if self.kind == "last":
            return [num_states - 1]
        if self.kind == "learned":
            return list(range(num_states))
        first, last = (_absolute(i, num_states, self) for i in (self.start, self.stop))
        if last < first:
            raise EsvaError(f"layer range {self} is empty (first {first} > last {last})")
        return list(range(first, last + 1))

    def __str__(self) -> str:
        if self.kind == "index":
            return str(self.start)
        if self.kind == "range":
            return f"{self.start}..{self.stop} mean"
        return self.kind


def _absolute(index: int, num_states: int, spec: LayerSpec) -> int:
    absolute = index + num_states if index < 0 else index
    if not 0 <= absolute < num_states:
        raise EsvaError(
            f"layer {spec} is out of range: this model has {num_states} hidden states "
            f"(embeddings + {num_states - 1} layers), valid indices {-num_states}..{num_states - 1}"
        )
    return absolute


class LayerSelector(nn.Module):
    """Reduce a model's outputs to the features of the chosen layer(s).

    Holds the trainable per-layer weights for ``"learned"`` (so they live in the encoder's
    ``state_dict``); for the other forms it has no parameters.
    """

    def __init__(self, layer: str | int | LayerSpec, num_states: int) -> None:
        super().__init__()
        self.spec = LayerSpec.parse(layer)
        self.num_states = num_states
        self.spec.indices(num_states)  # fail at construction, not on the first clip
        if self.spec.kind == "learned":
            self.weights = nn.Parameter(torch.zeros(num_states))  # softmax(0) = uniform mean

    def forward(
        self, hidden_states: Sequence[torch.Tensor] | None, last_hidden_state: torch.Tensor
    ) -> torch.Tensor:
        """Select from ``hidden_states`` (HF's tuple, embeddings first) or the final output."""
        if self.spec.kind == "last":
            return last_hidden_state
        if hidden_states is None:
            raise RuntimeError("the model was run without output_hidden_states=True")
        if len(hidden_states) != self.num_states:
            raise RuntimeError(
                f"expected {self.num_states} hidden states, got {len(hidden_states)}"
            )
        if self.spec.kind == "learned":
            weights = torch.softmax(self.weights, dim=0).to(hidden_states[0].dtype)
            stacked = torch.stack(tuple(hidden_states), dim=0)
            return torch.einsum("l,l...->...", weights, stacked)
        chosen = [hidden_states[i] for i in self.spec.indices(self.num_states)]
        if len(chosen) == 1:
            return chosen[0]
        return torch.stack(chosen, dim=0).mean(dim=0)

    def extra_repr(self) -> str:
        return f"layer={self.spec}, num_states={self.num_states}"
