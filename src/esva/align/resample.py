"""Put audio (~50 Hz) and video (its own fps) on one frame rate and one clock (Eq. 3).

The paper aligns F_A(t) with F_V(t + τ); that only means something once both sequences are
sampled at the same instants. Linear interpolation is enough here: the features are smooth at
the rates involved, and it keeps the operation differentiable.
"""

from __future__ import annotations

import math

import torch


def resample_sequence(
    x: torch.Tensor,
    mask: torch.Tensor | None,
    src_fps: float,
    dst_fps: float,
    n_out: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3: resample (B, T, D) frames taken at ``src_fps`` to ``dst_fps`` on the same clock.

    Frame k of the output is at time k / dst_fps; frame j of the input at j / src_fps. An output
    frame is valid when both input frames it interpolates between are valid; output frames past
    the input's end are invalid. Returns the resampled (B, n_out, D) sequence and its (B, n_out)
    mask. ``n_out`` defaults to the number of output frames the input's duration covers.
    """
    if src_fps <= 0 or dst_fps <= 0:
        raise ValueError(f"frame rates must be positive, got {src_fps} -> {dst_fps}")
    b, t, _ = x.shape
    if mask is None:
        mask = torch.ones(b, t, dtype=torch.bool, device=x.device)
    if n_out is None:
        n_out = max(1, math.floor((t - 1) * dst_fps / src_fps) + 1) if t > 0 else 0
    if t == 0 or n_out == 0:
        return x.new_zeros(b, n_out, x.shape[-1]), torch.zeros(
            b, n_out, dtype=torch.bool, device=x.device
        )
    if src_fps == dst_fps and n_out == t:
        return x, mask
    pos = torch.arange(n_out, device=x.device, dtype=torch.float64) * (src_fps / dst_fps)
    pos = torch.round(pos * 1e6) / 1e6  # float error must not push an exact frame past the end
    lo = pos.floor().long()
    frac = (pos - lo.double()).to(x.dtype)
    inside = lo <= t - 1
    # On an exact input frame (frac == 0) the upper neighbour is not needed.
    hi = torch.where(frac > 0, lo + 1, lo)
    inside &= hi <= t - 1
    lo_c, hi_c = lo.clamp(max=t - 1), hi.clamp(max=t - 1)
    y = x[:, lo_c] * (1 - frac)[None, :, None] + x[:, hi_c] * frac[None, :, None]
    m = mask[:, lo_c] & mask[:, hi_c] & inside[None, :]
    y = y * m.unsqueeze(-1).to(y.dtype)
    return y, m
