"""Baselines for the audio-video offset: what ESVA's Eq. 9 in the learned space is measured against.

All three read the same :class:`~esva.sync.space.SyncFeatures` grid as ESVA (log-mel
audio frames and pooled mouth + face pixels at 50 Hz) and return a :class:`BaselineOffset` in
the paper's convention (F_A(t) ~ F_V(t + τ); audio lag = −τ), searched over the same bounded
range.

``xcorr_raw_offset``
    Eq. 5 alone on the *raw* features. Raw audio (40 mel bands) and pixels (2 x 144 values)
    have no common space, so F_A·F_V is undefined; the multivariate cross-correlation used is
    the lagged RV coefficient (Escoufier 1973), the squared Frobenius norm of the lag-τ
    cross-correlation matrix of the z-scored streams, normalised by their auto-correlations:
    RV(τ) = ‖A_tᵀ V_{t+τ}‖²_F / (‖AᵀA‖_F ‖VᵀV‖_F), which is 1 for streams that are linear
    images of each other and does not care about signs.
``dtw_offset``
    Dynamic time warping (dtaidistance's C implementation; unconstrained, or within a
    Sakoe-Chiba band of the search range) between the audio and visual sequences in the *same
    learned space* as ESVA; the offset is the median of (visual index − audio index) along the
    warping path, so ESVA and DTW differ only in how the offset is read off the features.
``energy_mouth_offset``
    The classic signal baseline (e.g. Hershey & Movellan 2000; Slaney & Covell's FaceSync):
    cross-correlation of the audio energy envelope with the mouth opening, the darkness of the
    centre of the mouth crop (the open mouth shows its dark cavity), both z-scored.

Each search takes the same ``max_offset_s`` bound and refines the peak to sub-frame precision
with :func:`esva.align.parabolic_peak` (except DTW, whose path is integral; its median of many
integer steps is fractional anyway).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from esva.align.offsets import global_xcorr, parabolic_peak, shifted_products, standardize
from esva.sync.space import SyncFeatures, SyncSpace, SyncSpaceConfig


@dataclass
class BaselineOffset:
    """A baseline's estimate (frames of ``fps``; paper convention) and its cost."""

    method: str
    tau_frames: float  # NaN when undefined (no overlap)
    fps: float
    score: np.ndarray  # the curve that was maximised over τ (DTW: its path's j - i histogram)
    seconds: float  # wall time of the estimate itself (features excluded)

    @property
    def audio_lag_ms(self) -> float:
        return -1000.0 * self.tau_frames / self.fps


def _torch(x: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=dtype).unsqueeze(0)


def _peak(curve: torch.Tensor, max_shift: int) -> float:
    """Sub-frame argmax of a (2K+1,) curve as τ in frames (NaN when the curve is all NaN)."""
    index, _ = parabolic_peak(-curve.unsqueeze(0))
    return float(index[0]) - max_shift


def _max_shift(feats: SyncFeatures, max_offset_s: float) -> int:
    return max(1, min(round(max_offset_s * feats.fps), len(feats) - 1))


def xcorr_raw_offset(feats: SyncFeatures, max_offset_s: float = 0.5) -> BaselineOffset:
    """Eq. 5 on the raw features, as the lagged RV coefficient (see the module docstring)."""
    start = time.perf_counter()
    k = _max_shift(feats, max_offset_s)
    ma, mv = _torch(feats.audio_mask, torch.bool), _torch(feats.visual_mask, torch.bool)
    a = standardize(_torch(feats.audio), ma)[0]  # (T, da)
    v = standardize(_torch(feats.visual), mv)[0]  # (T, dv)
    t = a.shape[0]
    vpad = torch.nn.functional.pad(v, (0, 0, k, k))
    mpad = torch.nn.functional.pad(mv[0], (k, k))
    norm = torch.linalg.matrix_norm(a.T @ a) * torch.linalg.matrix_norm(v.T @ v)
    rv = torch.full((2 * k + 1,), float("nan"))
    for j in range(2 * k + 1):  # τ = j - k
        both = (ma[0] & mpad[j : j + t]).unsqueeze(-1)
        if both.sum() < 0.25 * t:
            continue
        cross = (a * both).T @ (vpad[j : j + t] * both)
        rv[j] = (cross**2).sum() / norm
    tau = _peak(rv, k)
    return BaselineOffset("xcorr-raw", tau, feats.fps, rv.numpy(), time.perf_counter() - start)


def dtw_offset(
    feats: SyncFeatures, space: SyncSpace, max_offset_s: float = 0.5, band: bool = False
) -> BaselineOffset:
    """DTW in the learned sync space (dtaidistance's C implementation).

    ``band=False`` is classic DTW (any warping; O(T²)); ``band=True`` restricts the path to a
    Sakoe-Chiba band as wide as the search range (O(T·K)), the same bound ESVA searches in.
    Either way the offset is clipped to ±``max_offset_s``. The projection into the space is
    included in ``seconds``, as it is in ESVA's estimate.
    """
    start = time.perf_counter()
    za, zv = space.project(feats)
    result = dtw_path_offset(
        za, zv, feats.audio_mask, feats.visual_mask, feats.fps, max_offset_s, band
    )
    result.seconds = time.perf_counter() - start
    return result


def dtw_path_offset(
    za: np.ndarray,
    zv: np.ndarray,
    ma: np.ndarray,
    mv: np.ndarray,
    fps: float,
    max_offset_s: float = 0.5,
    band: bool = False,
) -> BaselineOffset:
    """DTW between (T, d) sequences already in one space: the median of the path's j − i."""
    from dtaidistance import dtw_ndim

    start = time.perf_counter()
    k = max(1, min(round(max_offset_s * fps), len(za) - 1))
    a = standardize(_torch(za), _torch(ma, torch.bool))[0].double().numpy()
    v = standardize(_torch(zv), _torch(mv, torch.bool))[0].double().numpy()
    options = {"window": k + 1} if band else {}
    path = np.asarray(dtw_ndim.warping_path(a, v, use_c=True, **options))
    keep = ma[path[:, 0]] & mv[path[:, 1]]
    steps = (path[keep, 1] - path[keep, 0]).astype(np.float64)
    tau = float(np.clip(np.median(steps), -k, k)) if len(steps) else float("nan")
    hist = np.bincount(np.clip(steps.astype(int) + k, 0, 2 * k), minlength=2 * k + 1)
    name = "dtw-band" if band else "dtw"
    return BaselineOffset(name, tau, fps, hist.astype(float), time.perf_counter() - start)


def mouth_opening(feats: SyncFeatures, config: SyncSpaceConfig) -> np.ndarray:
    """Darkness of the centre of the (pooled, grey) mouth crop, per grid frame.

    The mouth box of the tracker is centred on the lips; the centre half of it (in both
    directions) holds the mouth cavity, which is dark when the mouth is open.
    """
    if "mouth" not in config.images:
        raise ValueError(f"the features hold no mouth crop (visual={config.visual!r})")
    pixels = config.pixels
    images = feats.visual.reshape(len(feats), len(config.images), pixels, pixels)
    img = images[:, config.images.index("mouth")]
    q = pixels // 4
    return -img[:, q : pixels - q, q : pixels - q].mean(axis=(1, 2))


def energy_envelope(feats: SyncFeatures) -> np.ndarray:
    """Audio energy per grid frame in log units: the log of the summed mel power."""
    power = np.power(10.0, feats.audio.astype(np.float64))
    return np.log10(power.sum(axis=1) + 1e-10)


def energy_mouth_offset(
    feats: SyncFeatures, config: SyncSpaceConfig, max_offset_s: float = 0.5
) -> BaselineOffset:
    """Classic: audio energy envelope x mouth opening, normalised cross-correlation.

    ``config`` says how the visual features are laid out (the sync space's config)."""
    start = time.perf_counter()
    k = _max_shift(feats, max_offset_s)
    energy = _torch(energy_envelope(feats)[:, None])
    opening = _torch(mouth_opening(feats, config)[:, None])
    ma, mv = _torch(feats.audio_mask, torch.bool), _torch(feats.visual_mask, torch.bool)
    # Eq. 5's normalised correlation of the two 1-d streams (a cosine over their overlap).
    c = global_xcorr(shifted_products(standardize(energy, ma), standardize(opening, mv), ma, mv, k))
    c = c[0]
    tau = _peak(c, k)
    return BaselineOffset("energy-mouth", tau, feats.fps, c.numpy(), time.perf_counter() - start)
