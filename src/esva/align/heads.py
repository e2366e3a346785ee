"""Learned linear heads that project audio and visual frames into one space.

Eq. 4-5 compare F_A(t) with F_V(t + τ) directly, which needs both streams in one space of one
dimensionality; real encoders give e.g. 384-d audio and 263-d face features. Two linear maps
(the simplest thing that can align two feature spaces) are trained with L_align (Eq. 8).
"""

from __future__ import annotations

import torch
from torch import nn


class SyncHeads(nn.Module):
    """audio (B, T, Da) -> (B, T, d) and visual (B, T, Dv) -> (B, T, d)."""

    def __init__(self, audio_dim: int, visual_dim: int, sync_dim: int = 32) -> None:
        super().__init__()
        self.audio = nn.Linear(audio_dim, sync_dim)
        self.visual = nn.Linear(visual_dim, sync_dim)

    def forward(
        self, audio: torch.Tensor, visual: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.audio(audio), self.visual(visual)
