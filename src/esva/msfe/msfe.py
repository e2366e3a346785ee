"""Multi-Scale Feature Extraction (MSFE), the paper's Eq. 1.

Frozen self-supervised audio features F_A (B, T, D) are refined by N parallel 1-D convolutions
φ_i over time, each with a different receptive field, and mixed by trainable weights:

    F'_A = Σ_i w_i · φ_i(F_A)                                             (Eq. 1)

The weights are softmax-normalised so that they stay comparable after training
(``MSFE.branch_weights()`` tells which time scales the model relies on). A residual path (a
pointwise projection of F_A) keeps the frame-level content intact, so MSFE can only add context.

At ~50 Hz audio features the default branches see 20 ms, 60 ms, 180 ms, 500 ms and ~1 s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class MSFEConfig:
    in_dim: int
    out_dim: int = 128
    # (kernel, dilation) per branch. Receptive field = (k - 1) * d + 1 frames; at 50 Hz:
    # 1 -> 20 ms, 3 -> 60 ms, 9 -> 180 ms, 25 -> 500 ms, 49 -> 980 ms.
    kernel_sizes: tuple[int, ...] = (1, 3, 3, 5, 7)
    dilations: tuple[int, ...] = (1, 1, 4, 6, 8)
    dropout: float = 0.1
    residual: bool = True

    def __post_init__(self) -> None:
        self.kernel_sizes = tuple(int(k) for k in self.kernel_sizes)
        self.dilations = tuple(int(d) for d in self.dilations)
        if len(self.kernel_sizes) != len(self.dilations) or not self.kernel_sizes:
            raise ValueError("MSFE needs one dilation per kernel size, and at least one branch")
        if any(k < 1 or k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"MSFE kernel sizes must be odd and >= 1, got {self.kernel_sizes}")
        if any(d < 1 for d in self.dilations):
            raise ValueError(f"MSFE dilations must be >= 1, got {self.dilations}")

    def receptive_fields(self) -> list[int]:
        """Receptive field of each branch, in input frames."""
        return [(k - 1) * d + 1 for k, d in zip(self.kernel_sizes, self.dilations, strict=True)]


def mix_branches(branch_outputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 1: F'_A = Σ_i w_i · φ_i(F_A).

    Args:
        branch_outputs: (N, B, T, D') the outputs φ_i(F_A) of the N branches.
        weights: (N,) mixing weights w_i (already normalised by the caller).
    """
    return torch.einsum("n,nbtd->btd", weights, branch_outputs)


class MSFE(nn.Module):
    """Parallel dilated 1-D convolutions over time mixed by softmax-normalised trainable weights."""

    def __init__(self, config: MSFEConfig) -> None:
        super().__init__()
        self.config = config
        self.norm = nn.LayerNorm(config.in_dim)
        self.branches = nn.ModuleList(
            nn.Conv1d(
                config.in_dim, config.out_dim, kernel_size=k, dilation=d, padding=(k - 1) * d // 2
            )
            for k, d in zip(config.kernel_sizes, config.dilations, strict=True)
        )
        # Zero logits = equal weights at the start: no time scale is preferred a priori.
        self.branch_logits = nn.Parameter(torch.zeros(len(self.branches)))
        self.residual = nn.Linear(config.in_dim, config.out_dim) if config.residual else None
        self.dropout = nn.Dropout(config.dropout)
        self.out_norm = nn.LayerNorm(config.out_dim)

    def branch_weights(self) -> torch.Tensor:
        """The normalised mixing weights w_i of Eq. 1 (sum to 1)."""
        return torch.softmax(self.branch_logits, dim=0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, D) -> (B, T, D'). ``mask`` (B, T) is True on real frames.

        Padded frames are zeroed before the convolutions (so they add nothing to their
        neighbours' context) and after (so nothing downstream reads them).
        """
        x = self.norm(x)
        if mask is not None:
            x = x * mask.unsqueeze(-1).to(x.dtype)
        channels_first = x.transpose(1, 2)  # Conv1d wants (B, D, T)
        outs = torch.stack(
            [F.gelu(branch(channels_first)).transpose(1, 2) for branch in self.branches]
        )
        y = mix_branches(outs, self.branch_weights())
        if self.residual is not None:
            y = y + self.residual(x)
        y = self.out_norm(self.dropout(y))
        if mask is not None:
            y = y * mask.unsqueeze(-1).to(y.dtype)
        return y
