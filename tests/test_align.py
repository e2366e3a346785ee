"""Audio-video alignment (Eq. 3-9) on cases with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d

from esva.align import (
    alignment_cost,
    alignment_curves,
    alignment_loss,
    estimate_offset,
    global_xcorr,
    local_distance,
    resample_sequence,
    shift,
    shifted_products,
    standardize,
)


def _pair(true_tau: float, t: int = 300, d: int = 8, seed: int = 0, drift: float = 0.0):
    """A smooth random sequence a and v with v(t + τ) = a(t) (τ may be fractional or drift)."""
    rng = np.random.default_rng(seed)
    margin = 40
    x = gaussian_filter1d(rng.standard_normal((t + 2 * margin, d)), 2.0, axis=0)
    frames = np.arange(t)
    tau = true_tau + drift * frames / t  # τ(t) grows linearly when drifting
    src = frames + margin - tau
    v = np.stack([np.interp(src, np.arange(t + 2 * margin), x[:, k]) for k in range(d)], axis=1)
    return x[margin : margin + t].astype(np.float32), v.astype(np.float32)


@pytest.mark.parametrize("true_tau", [-7.0, -3.0, 0.0, 2.0, 9.0, -4.6, 0.3, 2.5, 6.75])
def test_estimate_offset_recovers_integer_and_fractional_shifts(true_tau):
    a, v = _pair(true_tau, seed=int(abs(true_tau) * 10))
    est = estimate_offset(a, v, fps=25.0, max_offset_s=0.5)
    assert est.defined
    assert abs(est.tau_frames - true_tau) <= 0.1
    assert est.tau_s == pytest.approx(est.tau_frames / 25.0)
    assert est.audio_lag_ms == pytest.approx(-1000 * est.tau_s)
    assert est.confidence > 0.8


def test_local_offsets_follow_a_linear_drift():
    a, v = _pair(-4.0, t=500, drift=8.0)  # τ goes from -4 to +4 frames over the clip
    est = estimate_offset(a, v, fps=25.0, max_offset_s=0.6, window_s=2.0, hop_s=1.0)
    local = est.local_tau_s * 25.0
    ok = ~np.isnan(local)
    assert ok.sum() >= 5
    assert np.all(np.diff(local[ok]) > 0), "per-window offsets must increase with the drift"
    centres = est.window_start_s[ok] * 25.0 + 25.0  # window centre in frames
    expected = -4.0 + 8.0 * centres / 500
    assert np.abs(local[ok] - expected).max() < 0.6


def test_alignment_cost_is_lower_for_the_aligned_pair():
    a, v = _pair(5.0)
    v_aligned = np.roll(v, -5, axis=0)[:-5]  # V(t + 5) = a(t)
    a_cut = a[:-5]
    mask = torch.ones(1, len(a_cut), dtype=torch.bool)

    def cost_at_zero(v_seq):
        products = shifted_products(
            standardize(torch.tensor(a_cut)[None], mask),
            standardize(torch.tensor(v_seq)[None], mask),
            mask,
            mask,
            0,
        )
        return alignment_cost(local_distance(products, 25, 12), global_xcorr(products), 1.0, 1.0)[
            0, 0
        ]

    assert cost_at_zero(v_aligned) < cost_at_zero(v[:-5]) - 0.5


def test_xcorr_is_normalised_and_peaks_at_the_shift():
    a, v = _pair(3.0)
    m = torch.ones(1, len(a), dtype=torch.bool)
    p = shifted_products(
        standardize(torch.tensor(a)[None], m), standardize(torch.tensor(v)[None], m), m, m, 6
    )
    c = global_xcorr(p)[0]
    assert torch.all(c <= 1.0 + 1e-5) and torch.all(c >= -1.0 - 1e-5)
    assert int(torch.argmax(c)) - 6 == 3
    assert float(c.max()) > 0.95


def test_local_distance_is_nan_where_a_window_has_no_overlap():
    a, v = _pair(0.0, t=100)
    ma = torch.ones(1, 100, dtype=torch.bool)
    mv = ma.clone()
    mv[0, :50] = False  # no video in the first half
    p = shifted_products(torch.tensor(a)[None], torch.tensor(v)[None], ma, mv, 2)
    d = local_distance(p, window=20, hop=20)
    assert torch.isnan(d[0, 0]).all() and torch.isfinite(d[0, -1]).all()


def test_alignment_loss_is_differentiable_and_soft_tau_near_truth():
    a, v = _pair(4.0, t=200)
    a_t = torch.tensor(a)[None].requires_grad_(True)
    m = torch.ones(1, 200, dtype=torch.bool)
    loss, soft_tau = alignment_loss(
        a_t, torch.tensor(v)[None], m, m, max_shift=10, window=25, hop=12, temperature=0.01
    )
    loss.backward()
    assert torch.isfinite(a_t.grad).all() and a_t.grad.abs().sum() > 0
    assert abs(float(soft_tau[0].detach()) - 4.0) < 0.6


def test_alignment_loss_lower_when_streams_share_content():
    a, v = _pair(2.0, t=200)
    noise = np.random.default_rng(5).standard_normal(v.shape).astype(np.float32)
    m = torch.ones(1, 200, dtype=torch.bool)
    geo = dict(max_shift=8, window=25, hop=12)
    good, _ = alignment_loss(torch.tensor(a)[None], torch.tensor(v)[None], m, m, **geo)
    bad, _ = alignment_loss(torch.tensor(a)[None], torch.tensor(noise)[None], m, m, **geo)
    assert good < bad


def test_shift_applies_tau_with_fractions_and_masks():
    v = torch.arange(10, dtype=torch.float32).reshape(1, 10, 1)
    m = torch.ones(1, 10, dtype=torch.bool)
    out, mo = shift(v, m, torch.tensor([2.5]))
    # V'(t) = V(t + 2.5): 2.5, 3.5, ... valid while t + 3 <= 9
    torch.testing.assert_close(out[0, :7, 0], torch.arange(7, dtype=torch.float32) + 2.5)
    assert mo[0, :7].all() and not mo[0, 7:].any()
    out, mo = shift(v, m, torch.tensor([-1.0]))
    assert not mo[0, 0] and out[0, 1, 0] == 0.0 and out[0, 9, 0] == 8.0


def test_shift_by_the_estimate_realigns():
    a, v = _pair(-5.0)
    est = estimate_offset(a, v, fps=25.0)
    m = torch.ones(1, len(v), dtype=torch.bool)
    v2, m2 = shift(torch.tensor(v)[None], m, torch.tensor([est.tau_frames]))
    again = estimate_offset(a, v2[0].numpy(), fps=25.0, visual_mask=m2[0].numpy())
    assert abs(again.tau_frames) < 0.1


def test_resample_to_a_common_rate():
    t = torch.arange(50, dtype=torch.float32) / 50.0  # 1 s at 50 Hz
    x = torch.stack([t, 2 * t], dim=-1)[None]
    y, m = resample_sequence(x, None, 50.0, 25.0)
    assert y.shape == (1, 25, 2) and m.all()
    torch.testing.assert_close(y[0, :, 0], torch.arange(25, dtype=torch.float32) / 25.0)
    up, mu = resample_sequence(x, None, 50.0, 100.0, n_out=100)
    torch.testing.assert_close(up[0, 1, 0], torch.tensor(0.01))
    assert mu[0, 98] and not mu[0, 99]  # frame 99 lies beyond the last input frame


def test_curves_have_one_entry_per_tau():
    a, v = _pair(0.0, t=120)
    m = torch.ones(1, 120, dtype=torch.bool)
    c = alignment_curves(
        torch.tensor(a)[None], torch.tensor(v)[None], m, m, max_shift=5, window=30, hop=15
    )
    assert c.cost.shape == (1, 11) and c.xcorr.shape == (1, 11) and c.d_local.shape[-1] == 11


def test_no_overlap_gives_undefined_offset_not_nan_crash():
    a = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    est = estimate_offset(a, a, fps=25.0, visual_mask=np.zeros(50, bool))
    assert not est.defined and est.tau_s == 0.0 and est.confidence == 0.0
