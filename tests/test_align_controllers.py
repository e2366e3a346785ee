"""Streaming alignment controllers on synthetic drift (no media, no weights)."""

from __future__ import annotations

import math
import shutil
import tempfile

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d

from esva.recipes.engine import LoopConfig
from esva.recipes.sync_space import fit_uncertainty
from esva.sync.controllers import (
    Backstepping,
    FixedGain,
    FuzzyGain,
    NeuralAdaptive,
    StreamConfig,
    UncertaintyNet,
    WindowEstimate,
    stream_estimates,
    tracking_metrics,
)
from esva.sync.space import SyncFeatures, SyncSpace, SyncSpaceConfig

HOP = 0.5


def _truth(times: np.ndarray) -> np.ndarray:
    """+200 ms step at 10 s, then a ramp of +20 ms/s from 20 s."""
    return np.where(times < 10, 0.0, 200.0) + np.where(times >= 20, 20.0 * (times - 20), 0.0)


def _windows(seed: int = 0, outliers: float = 0.1, n: int = 80) -> tuple[list, np.ndarray]:
    """Window estimates of the truth: 8 ms noise on confident windows, and a share of
    low-confidence windows that locked onto a wrong peak 300 ms away."""
    rng = np.random.default_rng(seed)
    times = np.arange(n) * HOP
    truth = _truth(times)
    out = []
    for t, y in zip(times, truth, strict=True):
        if rng.random() < outliers:
            out.append(WindowEstimate(t, y + rng.choice([-300.0, 300.0]), 0.05, 1.0, 200.0, 1.0))
        else:
            out.append(WindowEstimate(t, y + rng.normal(0, 8.0), 0.45, 6.0, 10.0, 1.0))
    return out, truth


def _trained_net() -> UncertaintyNet:
    rng = np.random.default_rng(1)
    inputs, errors = [], []
    for _ in range(400):
        good = rng.random() < 0.8
        w = WindowEstimate(
            0.0,
            0.0,
            0.45 if good else 0.05,
            6.0 if good else 1.0,
            10.0 if good else 200.0,
            1.0,
        )
        inputs.append(w.inputs())
        errors.append(rng.normal(0, 8.0) if good else rng.choice([-300.0, 300.0]))
    out = tempfile.mkdtemp(prefix="esva-uncertainty-")
    try:  # on the engine, as the sync-space recipe fits it: 3 epochs of 100 full-batch steps
        loop = LoopConfig(epochs=3, lr=1e-2, out_dir=out, grad_clip=0.0, progress=False)
        return fit_uncertainty(np.array(inputs), np.array(errors), loop, 100)[0]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_uncertainty_net_learns_which_windows_to_distrust():
    net = _trained_net()
    good = WindowEstimate(0.0, 0.0, 0.45, 6.0, 10.0, 1.0).inputs()
    bad = WindowEstimate(0.0, 0.0, 0.05, 1.0, 200.0, 1.0).inputs()
    with torch.no_grad():
        sigma = torch.exp(net(torch.from_numpy(np.stack([good, bad])))).numpy()
    assert sigma[0] < 20.0, sigma  # the fitted Laplace scale of 8-ms Gaussian noise is ~6 ms
    assert sigma[1] > 10 * sigma[0], sigma


@pytest.mark.parametrize(
    "make", [FixedGain, FuzzyGain, lambda: NeuralAdaptive(_trained_net()), Backstepping]
)
def test_every_controller_tracks_a_step_and_a_ramp(make):
    windows, truth = _windows(outliers=0.0)
    times = np.array([w.t_s for w in windows])
    tracked = make().run(windows)
    m = tracking_metrics(times, tracked, truth, [(10.0, 200.0)], band_ms=40.0)
    assert m.settled == 1.0 and m.settling_s < 5.0, m
    # On the ramp (after it has been going 5 s) the lag of the tracker stays modest.
    late = times >= 25
    assert np.mean(np.abs(tracked[late] - truth[late])) < 40.0


def test_adaptive_controllers_reject_unconfident_outliers_better_than_fixed_gain():
    errors = {}
    for name, make in (
        ("fixed", FixedGain),
        ("fuzzy", FuzzyGain),
        ("neural", lambda: NeuralAdaptive(_trained_net())),
        ("backstepping", Backstepping),
    ):
        maes = []
        for seed in range(3):
            windows, truth = _windows(seed=seed, outliers=0.2)
            maes.append(np.mean(np.abs(make().run(windows) - truth)))
        errors[name] = float(np.mean(maes))
    for name in ("fuzzy", "neural", "backstepping"):
        assert errors[name] < errors["fixed"], errors


def test_backstepping_learns_the_drift_rate():
    """A constant drift leaves a fixed-gain filter a steady lag of rate·hop·(1-g)/g; the
    backstepping tracker's rate state removes it."""
    times = np.arange(120) * HOP
    truth = 10.0 * times  # 10 ms/s clock drift
    pairs = zip(times, truth, strict=True)
    windows = [WindowEstimate(t, y, 0.45, 6.0, 10.0, 1.0) for t, y in pairs]
    ctl = Backstepping()
    tracked = ctl.run(windows)
    fixed = FixedGain().run(windows)
    assert abs(tracked[-1] - truth[-1]) < 2.0
    assert abs(fixed[-1] - truth[-1]) > 8.0
    assert ctl.rate == pytest.approx(10.0, rel=0.1)


def test_fuzzy_gain_grows_with_confidence_and_with_a_real_jump():
    fuzzy = FuzzyGain()
    low, high = fuzzy.gain(0.02, 300.0), fuzzy.gain(0.6, 300.0)
    slow = fuzzy.gain(0.6, 10.0)
    assert low < 0.15 < high and slow < high


def test_tracking_metrics_on_a_known_response():
    times = np.arange(0, 10, 0.5)
    truth = np.where(times < 2, 0.0, 100.0)
    # overshoots to 150 at t = 3, inside the 40-ms band from t = 4.5 on
    tracked = np.interp(times, [0, 2, 3, 4, 4.5, 10], [0, 0, 150, 150, 100, 100])
    m = tracking_metrics(times, tracked, truth, [(2.0, 100.0)], band_ms=40.0)
    assert m.overshoot_ms == pytest.approx(50.0)
    assert m.settling_s == pytest.approx(2.5)
    assert m.settled == 1.0
    assert m.mae_ms == pytest.approx(np.mean(np.abs(tracked - truth)))


def test_undefined_windows_leave_the_state_alone():
    nan = WindowEstimate(1.0, math.nan, 0.0, 0.0, math.nan, 0.0)
    for ctl in (FixedGain(), FuzzyGain(), NeuralAdaptive(_trained_net()), Backstepping()):
        ctl.reset(50.0)
        assert ctl.update(nan, HOP) == pytest.approx(50.0)


def test_stream_estimates_follow_a_time_varying_offset():
    """Generated features with identity heads: the windows see the offset change."""
    config = SyncSpaceConfig(n_mels=4, visual="mouth", pixels=2, context=0, sync_dim=4)
    space = SyncSpace(config)
    with torch.no_grad():
        for head in (space.heads.audio, space.heads.visual):
            head.weight.copy_(torch.eye(4))
            head.bias.zero_()
    fps, n = config.fps, 1000  # 20 s
    rng = np.random.default_rng(0)
    margin = 100
    x = gaussian_filter1d(rng.standard_normal((n + 2 * margin, 4)), 3.0, axis=0)
    t = np.arange(n) / fps
    lag_ms = np.where(t < 10, 80.0, -120.0)  # the audio lags by 80 ms, then leads by 120 ms
    # audio(t) = visual(t - lag): the visual stream is x, the audio is x delayed
    src = np.arange(n) + margin - lag_ms / 1000.0 * fps
    audio = np.stack([np.interp(src, np.arange(n + 2 * margin), x[:, k]) for k in range(4)], 1)
    feats = SyncFeatures(
        audio=audio.astype(np.float32),
        visual=x[margin : margin + n].astype(np.float32),
        audio_mask=np.ones(n, bool),
        visual_mask=np.ones(n, bool),
        fps=fps,
        start_s=0.0,
    )
    windows = stream_estimates(feats, space, StreamConfig(window_s=3.0, hop_s=1.0))
    centres = np.array([w.t_s for w in windows])
    lags = np.array([w.lag_ms for w in windows])
    first, second = centres < 8.5, centres > 11.5
    assert np.all(np.abs(lags[first] - 80.0) < 5.0), lags[first]
    assert np.all(np.abs(lags[second] + 120.0) < 5.0), lags[second]
    assert all(w.confidence > 0.3 for w in windows if w.t_s < 8.5 or w.t_s > 11.5)


def test_shipped_uncertainty_weights_are_hash_checked(tmp_path):
    import shutil

    from esva.errors import EsvaError
    from esva.sync.controllers import UNCERTAINTY_FILE, load_uncertainty
    from esva.sync.space import ASSET_DIR

    load_uncertainty()  # the shipped pair matches its record
    copy = tmp_path / "sync"
    shutil.copytree(ASSET_DIR, copy)
    weights = copy / UNCERTAINTY_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one flipped bit in the last tensor's bytes: still loadable, not the same
    weights.write_bytes(bytes(data))
    with pytest.raises(EsvaError, match="sha256"):
        load_uncertainty(copy)
