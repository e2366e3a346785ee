"""Offset estimation between audio and visual feature sequences (Eq. 4-6, 8-9) and the shift.

Convention (the paper's): τ compares F_A(t) with F_V(t + τ). τ > 0 means the visual event comes
τ later than its audio, i.e. the audio *leads*; the audio lag users usually ask for is −τ.
All functions take batched sequences (B, T, d) on one frame rate (see ``resample``) with (B, T)
masks that are True on real frames; offsets are in frames of that rate unless named ``_s``.

D^i(τ) and C(τ) are computed on per-clip standardised features (each dimension z-scored over the
clip's valid frames and divided by √d), so that C is a correlation in [-1, 1], D = 2 − 2C on a
perfect stationary match, and neither can be lowered by simply shrinking the features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F


def standardize(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Z-score every dimension over the valid frames of each clip, scaled by 1/√d; pads -> 0."""
    m = mask.unsqueeze(-1).to(x.dtype)
    n = m.sum(dim=1, keepdim=True).clamp(min=1.0)
    mean = (x * m).sum(dim=1, keepdim=True) / n
    var = (((x - mean) * m) ** 2).sum(dim=1, keepdim=True) / n
    return (x - mean) / torch.sqrt(var + eps) * m / math.sqrt(x.shape[-1])


def _taus(max_shift: int) -> list[int]:
    return list(range(-max_shift, max_shift + 1))


@dataclass
class ShiftedProducts:
    """Frame-wise comparisons of F_A(t) with F_V(t + τ) for every τ in [-K, K], computed once.

    ``dot`` (B, 2K+1, T) = F_A(t)·F_V(t + τ); ``sq`` the squared distance ‖F_A(t) − F_V(t + τ)‖²;
    ``valid`` where both frames exist. Both Eq. 4 and Eq. 5 are sums of these over time.
    """

    dot: torch.Tensor
    sq: torch.Tensor
    valid: torch.Tensor
    a_sq: torch.Tensor  # (B, 1, T)   ‖F_A(t)‖²
    v_sq: torch.Tensor  # (B, 2K+1, T) ‖F_V(t + τ)‖²
    max_shift: int


def shifted_products(
    a: torch.Tensor, v: torch.Tensor, ma: torch.Tensor, mv: torch.Tensor, max_shift: int
) -> ShiftedProducts:
    """Compare every audio frame with the visual frames up to ``max_shift`` frames away."""
    t = a.shape[1]
    if v.shape[1] != t:
        raise ValueError(
            f"audio and visual need one length on one frame rate, got {t} and {v.shape[1]}"
        )
    k = max_shift
    # Padding V by K frames on each side and taking T-long windows at every start gives
    # V(t + τ) for τ = -K..K as a strided view, without copying the sequence 2K+1 times.
    vpad = F.pad(v, (0, 0, k, k))  # (B, T + 2K, d)
    windows = vpad.unfold(1, t, 1)  # (B, 2K+1, d, T)
    dot = torch.einsum("btd,bkdt->bkt", a, windows)
    v_sq = F.pad((v * v).sum(-1), (k, k)).unfold(1, t, 1)  # (B, 2K+1, T)
    a_sq = (a * a).sum(-1).unsqueeze(1)
    sq = a_sq + v_sq - 2 * dot
    mpad = F.pad(mv, (k, k)).unfold(1, t, 1)
    valid = ma.unsqueeze(1) & mpad
    return ShiftedProducts(dot, sq, valid, a_sq, v_sq, k)


def local_distance(
    p: ShiftedProducts, window: int, hop: int, min_coverage: float = 0.5
) -> torch.Tensor:
    """Eq. 4: D^i(τ) = ‖F_A^i(t) − F_V^i(t + τ)‖ for each window i of ``window`` frames.

    Returned as the mean squared distance per frame over the window's frames where both streams
    are valid: (B, n_windows, 2K + 1), NaN where fewer than ``min_coverage`` of the window's
    frames overlap at that τ. Windows start every ``hop`` frames.
    """
    b, k2, t = p.sq.shape
    window = max(1, min(window, t))
    hop = max(1, hop)
    valid = p.valid.to(p.sq.dtype)
    # Window sums by average pooling over time (times the window length).
    sums = F.avg_pool1d((p.sq * valid).reshape(b * k2, 1, t), window, hop) * window
    counts = F.avg_pool1d(valid.reshape(b * k2, 1, t), window, hop) * window
    d = (sums / counts.clamp(min=1.0)).reshape(b, k2, -1).transpose(1, 2)
    counts = counts.reshape(b, k2, -1).transpose(1, 2)
    return torch.where(counts >= min_coverage * window, d, torch.full_like(d, float("nan")))


def global_xcorr(p: ShiftedProducts, min_overlap: float = 0.25) -> torch.Tensor:
    """Eq. 5: C(τ) = ∫ F_A(t)·F_V(t + τ) dt, normalised.

    Normalised by the energies of both streams over the frames where both are valid at that τ
    (a cosine over the overlap), so C is in [-1, 1] and 1 means the streams match exactly.
    (B, 2K + 1); NaN where the overlap is below ``min_overlap`` of the best overlap over τ.
    """
    valid = p.valid.to(p.dot.dtype)
    count = valid.sum(-1)
    # Clamp before the square root: its gradient at 0 (no overlap) would be infinite.
    energy = torch.sqrt(((p.a_sq * valid).sum(-1) * (p.v_sq * valid).sum(-1)).clamp(min=1e-12))
    c = (p.dot * valid).sum(-1) / energy
    ok = (count >= min_overlap * count.max(dim=-1, keepdim=True).values) & (count > 0)
    return torch.where(ok, c, torch.full_like(c, float("nan")))


def alignment_cost(
    d_local: torch.Tensor, c_global: torch.Tensor, alpha: float = 1.0, beta: float = 1.0
) -> torch.Tensor:
    """Eq. 8: L_align(τ) = α·D_local(τ) − β·C_global(τ).

    ``d_local`` (B, n_windows, K) is averaged over the windows that have data at each τ;
    ``c_global`` is (B, K). NaN where neither term is defined.
    """
    valid = ~torch.isnan(d_local)
    n = valid.sum(1)
    d_mean = torch.where(valid, d_local, torch.zeros_like(d_local)).sum(1) / n.clamp(min=1)
    d_mean = torch.where(n > 0, d_mean, torch.full_like(d_mean, float("nan")))
    return alpha * d_mean - beta * c_global


def parabolic_peak(curve: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-frame minimum of (…, K) curves by a parabola through the discrete minimum and its
    neighbours. Returns (fractional index, value at the discrete minimum); index NaN when the
    whole curve is NaN. At the ends of the range, or with a NaN neighbour, no refinement.
    """
    filled = torch.nan_to_num(curve, nan=float("inf"))
    j = filled.argmin(dim=-1, keepdim=True)
    k = curve.shape[-1]
    left = torch.gather(filled, -1, (j - 1).clamp(min=0))
    mid = torch.gather(filled, -1, j)
    right = torch.gather(filled, -1, (j + 1).clamp(max=k - 1))
    denom = left - 2 * mid + right
    interior = (j > 0) & (j < k - 1) & torch.isfinite(left) & torch.isfinite(right) & (denom > 0)
    delta = torch.where(
        interior,
        0.5 * (left - right) / torch.where(interior, denom, torch.ones_like(denom)),
        torch.zeros_like(denom),
    )
    index = j.to(curve.dtype) + delta.clamp(-0.5, 0.5)
    all_nan = torch.isnan(curve).all(dim=-1, keepdim=True)
    index = torch.where(all_nan, torch.full_like(index, float("nan")), index)
    return index.squeeze(-1), mid.squeeze(-1)


def local_offsets(d_local: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Eq. 6: τ_i* = argmin_τ D^i(τ) for every window, sub-frame; (B, n_windows), NaN if empty."""
    index, _ = parabolic_peak(d_local)
    return index - max_shift


@dataclass
class BatchOffsets:
    """Batched result of :func:`estimate_offsets` (frames of the common rate)."""

    tau: torch.Tensor  # (B,) τ* of Eq. 9, sub-frame; 0 where undefined
    defined: torch.Tensor  # (B,) bool, False when the streams never overlap
    confidence: torch.Tensor  # (B,) in [0, 1]
    peak_z: torch.Tensor  # (B,) peak sharpness: (mean J − J*) / std J over τ
    local_tau: torch.Tensor  # (B, n_windows) Eq. 6 per-window offsets, NaN where undefined
    cost: torch.Tensor  # (B, K) L_align(τ)
    xcorr: torch.Tensor  # (B, K) C(τ)
    d_local: torch.Tensor  # (B, n_windows, K) D^i(τ)


@dataclass
class AlignmentCurves:
    """D^i(τ), C(τ) and L_align(τ) of a batch (differentiable)."""

    d_local: torch.Tensor  # (B, n_windows, 2K+1)
    xcorr: torch.Tensor  # (B, 2K+1)
    cost: torch.Tensor  # (B, 2K+1)
    max_shift: int


def alignment_curves(
    a: torch.Tensor,
    v: torch.Tensor,
    ma: torch.Tensor | None = None,
    mv: torch.Tensor | None = None,
    *,
    max_shift: int,
    window: int,
    hop: int,
    alpha: float = 1.0,
    beta: float = 1.0,
) -> AlignmentCurves:
    """Eq. 4, 5 and 8 over τ = -max_shift..max_shift on standardised (B, T, d) sequences."""
    b, t, _ = a.shape
    ma = torch.ones(b, t, dtype=torch.bool, device=a.device) if ma is None else ma
    mv = torch.ones(b, v.shape[1], dtype=torch.bool, device=a.device) if mv is None else mv
    products = shifted_products(standardize(a, ma), standardize(v, mv), ma, mv, max_shift)
    d = local_distance(products, window, hop)
    c = global_xcorr(products)
    return AlignmentCurves(d, c, alignment_cost(d, c, alpha, beta), max_shift)


def offsets_from_curves(curves: AlignmentCurves, beta: float = 1.0) -> BatchOffsets:
    """Eq. 6 (per-window argmin of D^i) and Eq. 9 (argmin of L_align), sub-frame."""
    cost = curves.cost.detach()
    index, best = parabolic_peak(cost)
    defined = ~torch.isnan(index)
    tau = torch.where(defined, index - curves.max_shift, torch.zeros_like(index))
    finite = ~torch.isnan(cost)
    n = finite.sum(-1).clamp(min=1)
    mean = torch.where(finite, cost, torch.zeros_like(cost)).sum(-1) / n
    std = torch.sqrt(
        (torch.where(finite, cost - mean.unsqueeze(-1), torch.zeros_like(cost)) ** 2).sum(-1) / n
    )
    peak_z = torch.where(defined, (mean - best) / (std + 1e-8), torch.zeros_like(mean))
    # Confidence: how far the best offset goes from a typical offset towards a perfect match.
    # On standardised features the cost of a perfect match is α·0 − β·1 = −β.
    median = torch.nanmedian(cost, dim=-1).values
    span = (median + beta).clamp(min=1e-8)
    confidence = torch.where(
        defined, ((median - best) / span).clamp(0.0, 1.0), torch.zeros_like(mean)
    )
    return BatchOffsets(
        tau,
        defined,
        confidence,
        peak_z,
        local_offsets(curves.d_local.detach(), curves.max_shift),
        cost,
        curves.xcorr.detach(),
        curves.d_local.detach(),
    )


def estimate_offsets(
    a: torch.Tensor,
    v: torch.Tensor,
    ma: torch.Tensor | None = None,
    mv: torch.Tensor | None = None,
    *,
    max_shift: int,
    window: int,
    hop: int,
    alpha: float = 1.0,
    beta: float = 1.0,
) -> BatchOffsets:
    """Eq. 6 and Eq. 9 on a batch: τ* = argmin_τ α·D_local(τ) − β·C_global(τ), sub-frame."""
    with torch.no_grad():
        curves = alignment_curves(
            a, v, ma, mv, max_shift=max_shift, window=window, hop=hop, alpha=alpha, beta=beta
        )
    return offsets_from_curves(curves, beta)


@dataclass
class OffsetEstimate:
    """The offset of one clip, in seconds and frames of the rate it was estimated at."""

    tau_s: float  # τ* (paper convention: F_A(t) ~ F_V(t + τ)); audio lag = −tau_s
    tau_frames: float
    fps: float
    confidence: float  # [0, 1]
    peak_z: float
    local_tau_s: np.ndarray  # per-window τ_i* (NaN where a window lacks data)
    window_start_s: np.ndarray
    taus_s: np.ndarray  # the τ grid
    cost: np.ndarray  # L_align(τ) on the grid
    xcorr: np.ndarray  # C(τ) on the grid
    d_local: np.ndarray  # (n_windows, K) D^i(τ)
    defined: bool

    @property
    def audio_lag_ms(self) -> float:
        """Milliseconds by which the audio lags the video (positive = audio late)."""
        return -1000.0 * self.tau_s


def estimate_offset(
    audio: torch.Tensor | np.ndarray,
    visual: torch.Tensor | np.ndarray,
    fps: float,
    *,
    audio_mask: torch.Tensor | np.ndarray | None = None,
    visual_mask: torch.Tensor | np.ndarray | None = None,
    max_offset_s: float = 0.5,
    window_s: float = 1.0,
    hop_s: float = 0.5,
    alpha: float = 1.0,
    beta: float = 1.0,
) -> OffsetEstimate:
    """Eq. 6 and Eq. 9 for one clip: (T, d) audio and visual features at ``fps`` frames/s.

    Both sequences must already be on one frame rate and in one space (see
    ``resample_sequence`` and ``SyncHeads``). ``max_offset_s`` bounds the search.
    """

    def batch(x, dtype=torch.float32):
        return torch.as_tensor(
            np.asarray(x) if not torch.is_tensor(x) else x, dtype=dtype
        ).unsqueeze(0)

    a, v = batch(audio), batch(visual)
    if a.ndim != 3 or v.ndim != 3 or a.shape[-1] != v.shape[-1]:
        raise ValueError(
            f"audio and visual must be (T, d) with the same d, got {tuple(a.shape[1:])} and "
            f"{tuple(v.shape[1:])}"
        )
    ma = None if audio_mask is None else batch(audio_mask, torch.bool)
    mv = None if visual_mask is None else batch(visual_mask, torch.bool)
    # Pad the shorter stream so both have one length; padding is masked out.
    t = max(a.shape[1], v.shape[1])
    ma = torch.ones(1, a.shape[1], dtype=torch.bool) if ma is None else ma
    mv = torch.ones(1, v.shape[1], dtype=torch.bool) if mv is None else mv
    a, ma = F.pad(a, (0, 0, 0, t - a.shape[1])), F.pad(ma, (0, t - ma.shape[1]))
    v, mv = F.pad(v, (0, 0, 0, t - v.shape[1])), F.pad(mv, (0, t - mv.shape[1]))
    max_shift = max(1, min(round(max_offset_s * fps), t - 1))
    window = max(2, round(window_s * fps))
    hop = max(1, round(hop_s * fps))
    with torch.no_grad():
        r = estimate_offsets(
            a, v, ma, mv, max_shift=max_shift, window=window, hop=hop, alpha=alpha, beta=beta
        )
    n_windows = r.d_local.shape[1]
    return OffsetEstimate(
        tau_s=float(r.tau[0]) / fps,
        tau_frames=float(r.tau[0]),
        fps=float(fps),
        confidence=float(r.confidence[0]),
        peak_z=float(r.peak_z[0]),
        local_tau_s=r.local_tau[0].numpy() / fps,
        window_start_s=np.arange(n_windows) * hop / fps,
        taus_s=np.array(_taus(max_shift), dtype=np.float64) / fps,
        cost=r.cost[0].numpy(),
        xcorr=r.xcorr[0].numpy(),
        d_local=r.d_local[0].numpy(),
        defined=bool(r.defined[0]),
    )


def soft_min_alignment(
    cost: torch.Tensor, max_shift: int, temperature: float = 0.05
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable Eq. 8 for training: the soft minimum over τ of L_align(τ).

    A hard argmin has no gradient with respect to the features; the soft minimum
    −t·log Σ_τ exp(−L(τ)/t) tends to min_τ L(τ) as t -> 0 and pulls the features towards a
    sharper best alignment. Returns (mean loss over clips where it is defined, soft-argmin τ
    per clip (B,), 0 where undefined).
    """
    finite = ~torch.isnan(cost)
    defined = finite.any(-1)
    logits = torch.where(finite, -cost / temperature, torch.full_like(cost, float("-inf")))
    logits = torch.where(defined.unsqueeze(-1), logits, torch.zeros_like(logits))
    soft_min = -temperature * torch.logsumexp(logits, dim=-1)
    weights = torch.softmax(logits, dim=-1)
    taus = torch.tensor(_taus(max_shift), dtype=cost.dtype, device=cost.device)
    soft_tau = torch.where(defined, (weights * taus).sum(-1), torch.zeros_like(soft_min))
    if not defined.any():
        return torch.where(finite, cost, torch.zeros_like(cost)).sum() * 0.0, soft_tau
    return soft_min[defined].mean(), soft_tau


def alignment_loss(
    a: torch.Tensor,
    v: torch.Tensor,
    ma: torch.Tensor,
    mv: torch.Tensor,
    *,
    max_shift: int,
    window: int,
    hop: int,
    alpha: float = 1.0,
    beta: float = 1.0,
    temperature: float = 0.05,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 8 as a training loss on (B, T, d) sequences: see :func:`soft_min_alignment`."""
    curves = alignment_curves(
        a, v, ma, mv, max_shift=max_shift, window=window, hop=hop, alpha=alpha, beta=beta
    )
    return soft_min_alignment(curves.cost, max_shift, temperature)


def shift(
    v: torch.Tensor, mv: torch.Tensor, tau: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply τ* to the visual sequence: V'(t) = V(t + τ), fractional τ by linear interpolation.

    ``tau`` is (B,) in frames. Frames whose source falls outside the clip, or between frames of
    which one is masked, become masked. After the shift, F_A(t) and V'(t) are aligned.
    """
    t = v.shape[1]
    pos = torch.arange(t, device=v.device, dtype=v.dtype).unsqueeze(0) + tau.to(v.dtype).unsqueeze(
        1
    )
    lo = pos.floor()
    frac = (pos - lo).unsqueeze(-1)
    lo = lo.long()
    hi = lo + (frac.squeeze(-1) > 0).long()
    inside = (lo >= 0) & (hi <= t - 1)
    lo_c, hi_c = lo.clamp(0, t - 1), hi.clamp(0, t - 1)
    gather = lambda x, idx: torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # noqa: E731
    out = gather(v, lo_c) * (1 - frac) + gather(v, hi_c) * frac
    m = inside & torch.gather(mv, 1, lo_c) & torch.gather(mv, 1, hi_c)
    return out * m.unsqueeze(-1).to(out.dtype), m
