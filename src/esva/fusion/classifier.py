"""Fuse the pooled audio, visual, text and audio-visual (joint) vectors into emotion predictions.

Any subset of modalities may be present: an absent one is replaced by a learned "missing"
embedding (rather than zeros, which the network could confuse with a real but quiet input),
and the output says which ones were used. Modality dropout during training teaches the head
to cope with the subsets it will meet at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# The streams the fusion sees; "joint" is the frame-level audio x aligned-visual stream.
MODALITIES: tuple[str, ...] = ("audio", "visual", "text", "joint")


@dataclass
class FusionOutput:
    logits: torch.Tensor  # (B, C)
    valence: torch.Tensor | None  # (B,)
    fused: torch.Tensor  # (B, H)


class FusionClassifier(nn.Module):
    def __init__(
        self, streams: list[str], hidden_dim: int, n_classes: int, use_valence: bool, dropout: float
    ) -> None:
        super().__init__()
        self.streams = list(streams)
        self.missing = nn.ParameterDict(
            {s: nn.Parameter(torch.zeros(hidden_dim)) for s in self.streams}
        )
        self.mlp = nn.Sequential(
            nn.Linear(hidden_dim * len(self.streams), hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.LayerNorm(hidden_dim),
        )
        self.emotion = nn.Linear(hidden_dim, n_classes)
        self.valence = nn.Linear(hidden_dim, 1) if use_valence else None

    def forward(
        self, pooled: dict[str, torch.Tensor], present: dict[str, torch.Tensor]
    ) -> FusionOutput:
        parts = []
        for s in self.streams:
            p = present[s].unsqueeze(-1).to(pooled[s].dtype)
            parts.append(pooled[s] * p + self.missing[s] * (1 - p))
        fused = self.mlp(torch.cat(parts, dim=-1))
        valence = self.valence(fused).squeeze(-1) if self.valence is not None else None
        return FusionOutput(self.emotion(fused), valence, fused)
