"""Attention pooling over time: which frames carry the emotion is learned, not assumed."""

from __future__ import annotations

import torch
from torch import nn


class AttentionPool(nn.Module):
    """(B, T, H) with a (B, T) mask -> (B, H) weighted mean, and the (B, T) attention weights.

    score_t = wᵀ tanh(W h_t); α = softmax over the valid frames. A clip with no valid frame
    pools to zeros (its modality is then treated as missing by the fusion).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.score = nn.Linear(dim, 1, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.score(torch.tanh(self.proj(h))).squeeze(-1)
        scores = scores.masked_fill(~mask, float("-inf"))
        any_valid = mask.any(dim=1, keepdim=True)
        # All-masked rows would give NaN from softmax(-inf...); give them zero weights instead.
        weights = torch.softmax(torch.where(any_valid, scores, torch.zeros_like(scores)), dim=1)
        weights = weights * mask.to(weights.dtype)
        return torch.einsum("bt,bth->bh", weights, h), weights
