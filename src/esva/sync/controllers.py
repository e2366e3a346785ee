"""Streaming alignment: re-estimate the offset over sliding windows and decide how far to trust
each new estimate (the paper's Section 4.4 / Table 7 "adaptive alignment controllers").

:func:`stream_estimates` slides a window (default 3 s, every 0.5 s) over a clip's sync-space
features and runs Eq. 9 on each window alone (the features are z-scored within the window, so
nothing from the future leaks in). A controller turns that noisy sequence of window estimates
y_k into a tracked offset θ_k, the value a live system would shift the video by:

``FixedGain``
    θ_k = θ_{k-1} + g·(y_k − θ_{k-1}) with a constant g: the baseline.
``FuzzyGain``
    g comes from a Mamdani fuzzy system (scikit-fuzzy) with rules on the estimate's confidence
    (low / medium / high) and on the drift rate it implies, |y_k − θ_{k-1}| / Δt (slow / fast):
    trust confident estimates that say the offset moved, ignore unconfident ones.
``NeuralAdaptive``
    a small MLP (:class:`UncertaintyNet`) predicts the standard deviation of each window's
    estimate error from what the window itself shows (confidence, peak sharpness, agreement of
    its local offsets, face coverage); a scalar Kalman filter with a random-walk offset then
    weights each update by that predicted variance. The MLP is fitted by Laplace negative log
    likelihood (:func:`laplace_nll`) on windows of training clips with known injected offsets
    (:func:`uncertainty_windows`), on the training engine (the ``sync-space`` recipe,
    :mod:`esva.recipes.sync_space`: a small non-convex net fitted by gradient steps).
``Backstepping``
    a two-state (offset θ, drift rate r) tracker designed by backstepping with a Lyapunov
    function, whose feedback gain is dynamic (grows with the squared tracking error and decays
    back). Continuous-time design, for a measured offset y(t) with slowly varying rate ẏ:
        e = y − θ,  θ̇ = r + k(t)·e,  ṙ = k_r·e,  k̇ = γ·(e/s)² − λ·(k − k_min)
    With ε = ẏ − r, V = e²/2 + ε²/(2·k_r) has V̇ = −k·e² + ε·ÿ/k_r ≤ −k_min·e² for a constant
    rate (ÿ = 0): e → 0 and the rate error stays bounded, whatever k(t) ≥ k_min does. The
    dynamic gain makes the loop fast after a jump (large e) and quiet when settled. Each update
    is weighted by the window's confidence (an unconfident window barely moves the state).
    Discretised with the window hop: predict θ by r·Δt, then correct (Euler); k ≤ k_max keeps
    k·Δt < 1, stable.

:func:`tracking_metrics` gives the tracking error, the overshoot after a step of the true
offset, and the settling time into a band of one video frame.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from esva.errors import EsvaError
from esva.hashing import file_sha256
from esva.io import atomic_path, read_json
from esva.sync.clip_media import ClipMedia
from esva.sync.degrade import add_noise_bursts, degrade_track, delay_audio, random_bursts
from esva.sync.estimate import ClipAlignConfig, estimate_from_features
from esva.sync.space import ASSET_DIR, CONFIG_FILE, SyncFeatures, SyncSpace

UNCERTAINTY_FILE = "uncertainty.safetensors"

# ---------------------------------------------------------------------------------------------
# Window estimates


@dataclass
class StreamConfig:
    """Sliding-window re-estimation (window and hop in seconds; Eq. 9 geometry inside)."""

    window_s: float = 3.0
    hop_s: float = 0.5
    max_offset_ms: float = 500.0
    local_window_s: float = 1.0  # Eq. 4's local windows inside each streaming window
    local_hop_s: float = 0.5
    alpha: float = 1.0
    beta: float = 1.0


@dataclass
class WindowEstimate:
    """Eq. 9 on one streaming window. ``lag_ms`` > 0: the audio lags the video."""

    t_s: float  # the window's centre on the container clock (what the estimate refers to)
    lag_ms: float  # NaN when undefined
    confidence: float
    peak_z: float
    local_spread_ms: float  # std of the window's local offsets (Eq. 6): low = consistent
    coverage: float  # share of the window's frames with a face

    def inputs(self) -> np.ndarray:
        """What :class:`UncertaintyNet` reads (unit-free, roughly O(1))."""
        spread = self.local_spread_ms if math.isfinite(self.local_spread_ms) else 500.0
        return np.array(
            [self.confidence, self.peak_z / 5.0, math.log1p(spread / 20.0), self.coverage],
            np.float32,
        )


def stream_estimates(
    feats: SyncFeatures, space: SyncSpace, config: StreamConfig | None = None
) -> list[WindowEstimate]:
    """Eq. 9 on every ``window_s`` window of the clip, every ``hop_s``."""
    config = config or StreamConfig()
    n = len(feats)
    win = max(2, round(config.window_s * feats.fps))
    hop = max(1, round(config.hop_s * feats.fps))
    out = []
    for start in range(0, max(1, n - win + 1), hop):
        seg = feats.slice(start, start + win)
        coverage = float(seg.visual_mask.mean()) if len(seg) else 0.0
        centre = feats.start_s + (start + len(seg) / 2) / feats.fps
        if coverage < 0.25:
            out.append(WindowEstimate(centre, float("nan"), 0.0, 0.0, float("nan"), coverage))
            continue
        c = config
        est = space.estimate_offset(
            seg, c.max_offset_ms, c.local_window_s, c.local_hop_s, c.alpha, c.beta
        )
        local = -1000.0 * est.local_tau_s[np.isfinite(est.local_tau_s)]
        spread = float(np.std(local)) if len(local) > 1 else float("nan")
        lag = est.audio_lag_ms if est.defined else float("nan")
        out.append(WindowEstimate(centre, lag, est.confidence, est.peak_z, spread, coverage))
    return out


# ---------------------------------------------------------------------------------------------
# Controllers


class Controller:
    """Turns window estimates into a tracked offset; ``run`` applies it to a whole stream."""

    name = "controller"

    def reset(self, initial_ms: float) -> None:
        raise NotImplementedError

    def update(self, est: WindowEstimate, dt: float) -> float:
        raise NotImplementedError

    def run(self, estimates: Sequence[WindowEstimate]) -> np.ndarray:
        """The tracked offset after each window (ms). Starts from the first defined estimate."""
        first = next((e.lag_ms for e in estimates if math.isfinite(e.lag_ms)), 0.0)
        self.reset(first)
        out, prev_t = [], None
        for est in estimates:
            dt = est.t_s - prev_t if prev_t is not None else 0.0
            prev_t = est.t_s
            out.append(self.update(est, dt))
        return np.asarray(out)


@dataclass
class FixedGain(Controller):
    """θ ← θ + g·(y − θ) for every defined estimate (the baseline)."""

    gain: float = 0.3
    name: str = "fixed"
    theta: float = 0.0

    def reset(self, initial_ms: float) -> None:
        self.theta = initial_ms

    def update(self, est: WindowEstimate, dt: float) -> float:
        if math.isfinite(est.lag_ms):
            self.theta += self.gain * (est.lag_ms - self.theta)
        return self.theta


class FuzzyGain(Controller):
    """A gain from fuzzy rules on (confidence, drift rate), Mamdani + centroid (scikit-fuzzy).

    ==============  ==========  =======
    confidence      drift rate  gain
    ==============  ==========  =======
    low             any         small
    medium          slow        small
    medium          fast        medium
    high            slow        medium
    high            fast        large
    ==============  ==========  =======

    The confidence sets follow what the estimator gives with held-out heads on the real clips
    (in-sync pairings 0.07-0.37, median 0.20; unrelated audio median 0.09): low below
    ~0.05-0.12, high above ~0.2-0.3. Drift rates are in ms of offset change per second.
    """

    name = "fuzzy"

    def __init__(self, conf_points: Sequence[float] = (0.05, 0.12, 0.2, 0.3)) -> None:
        import skfuzzy as fuzz
        from skfuzzy import control as ctrl

        c0, c1, c2, c3 = conf_points
        conf = ctrl.Antecedent(np.linspace(0.0, 1.0, 101), "confidence")
        rate = ctrl.Antecedent(np.linspace(0.0, 500.0, 101), "rate")
        gain = ctrl.Consequent(np.linspace(0.0, 1.0, 101), "gain")
        conf["low"] = fuzz.trapmf(conf.universe, [0.0, 0.0, c0, c1])
        conf["medium"] = fuzz.trimf(conf.universe, [c0, (c1 + c2) / 2, c3])
        conf["high"] = fuzz.trapmf(conf.universe, [c2, c3, 1.0, 1.0])
        rate["slow"] = fuzz.trapmf(rate.universe, [0.0, 0.0, 40.0, 160.0])
        rate["fast"] = fuzz.trapmf(rate.universe, [40.0, 160.0, 500.0, 500.0])
        gain["small"] = fuzz.trimf(gain.universe, [0.0, 0.05, 0.2])
        gain["medium"] = fuzz.trimf(gain.universe, [0.15, 0.35, 0.55])
        gain["large"] = fuzz.trimf(gain.universe, [0.5, 0.8, 1.0])
        rules = [
            ctrl.Rule(conf["low"], gain["small"]),
            ctrl.Rule(conf["medium"] & rate["slow"], gain["small"]),
            ctrl.Rule(conf["medium"] & rate["fast"], gain["medium"]),
            ctrl.Rule(conf["high"] & rate["slow"], gain["medium"]),
            ctrl.Rule(conf["high"] & rate["fast"], gain["large"]),
        ]
        self.sim = ctrl.ControlSystemSimulation(ctrl.ControlSystem(rules))
        self.theta = 0.0

    def gain(self, confidence: float, rate: float) -> float:
        """The rule base's gain for a window's confidence and implied drift rate (ms/s)."""
        self.sim.input["confidence"] = float(np.clip(confidence, 0.0, 1.0))
        self.sim.input["rate"] = float(np.clip(rate, 0.0, 500.0))
        with warnings.catch_warnings():
            # scikit-fuzzy 0.5 calls np.maximum with a positional `out` (deprecated in numpy 2)
            warnings.simplefilter("ignore", DeprecationWarning)
            self.sim.compute()
        return float(self.sim.output["gain"])

    def reset(self, initial_ms: float) -> None:
        self.theta = initial_ms

    def update(self, est: WindowEstimate, dt: float) -> float:
        if math.isfinite(est.lag_ms):
            innovation = est.lag_ms - self.theta
            rate = abs(innovation) / max(dt, 1e-3) if dt > 0 else 0.0
            self.theta += self.gain(est.confidence, rate) * innovation
        return self.theta


class UncertaintyNet(nn.Module):
    """WindowEstimate.inputs() (4) -> log σ (ms) of the window's estimate error."""

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        with torch.no_grad():  # start near σ = 50 ms
            self.net[-1].bias.fill_(math.log(50.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def laplace_nll(log_b: torch.Tensor, errors_ms: torch.Tensor) -> torch.Tensor:
    """Mean Laplace negative log likelihood of |errors| under scales exp(``log_b``) (+ const).

    What :class:`UncertaintyNet` is fitted by (the ``sync-space`` recipe's second stage, on the
    training engine). Laplace rather than Gaussian: window errors are mostly a few ms with rare
    jumps to a wrong peak hundreds of ms away, and the Laplace likelihood does not let those few
    dominate σ.
    """
    return (log_b + errors_ms.abs() / log_b.exp()).mean()


def uncertainty_windows(
    space: SyncSpace,
    media: Sequence[ClipMedia],
    seed: int = 0,
    stream: StreamConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """What :class:`UncertaintyNet` is fitted on: streaming-window estimates of ``media`` with
    known injected offsets, clean and degraded (noise bursts, blur, dropped frames).

    Returns (inputs (N, 4), errors in ms (N,)); the error is relative to the clip's own estimate
    on the unshifted clip (sync in real files is as published, not known exactly).
    """
    rng = np.random.default_rng(seed)
    inputs, errors = [], []
    for m in media:
        base_feats = space.features(m.audio, m.track)
        base = estimate_from_features(base_feats, space, ClipAlignConfig()).audio_lag_ms
        duration = len(m.audio.samples) / m.audio.sample_rate
        for lag_ms, degraded in ((0.0, False), (float(rng.uniform(-300, 300)), True)):
            audio, track = delay_audio(m.audio, lag_ms / 1000.0), m.track
            if degraded:
                audio = add_noise_bursts(audio, random_bursts(duration, 0.3, rng), rng)
                track = degrade_track(
                    track, random_bursts(duration, 0.2, rng), random_bursts(duration, 0.1, rng)
                )
            for w in stream_estimates(space.features(audio, track), space, stream):
                if np.isfinite(w.lag_ms):
                    inputs.append(w.inputs())
                    errors.append(w.lag_ms - (base + lag_ms))
    return np.asarray(inputs, np.float32).reshape(-1, 4), np.asarray(errors, np.float32)


def save_uncertainty(net: UncertaintyNet, directory: str | Path) -> Path:
    """Write ``uncertainty.safetensors`` (one metadata key: the same weights, the same bytes)."""
    from safetensors.torch import save_file

    path = Path(directory) / UNCERTAINTY_FILE
    state = {k: v.detach().float().contiguous().clone() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "esva-uncertainty-v1"})
    return path


def load_uncertainty(directory: str | Path | None = None) -> UncertaintyNet:
    """The shipped uncertainty estimator (``esva/assets/sync``), or one saved in ``directory``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(directory or ASSET_DIR) / UNCERTAINTY_FILE
    # The heads' config.json records the file's sha256 when the sync-space recipe wrote both.
    record = path.with_name(CONFIG_FILE)
    recorded = read_json(record) if record.is_file() else {}
    expected = recorded.get("uncertainty_sha256") if isinstance(recorded, dict) else None
    if expected is not None and path.is_file() and file_sha256(path) != expected:
        raise EsvaError("uncertainty-estimator weights fail their sha256 check (corrupted?)", path)
    net = UncertaintyNet()
    try:
        net.load_state_dict(load_file(str(path)), strict=True)
    except FileNotFoundError:
        raise EsvaError("uncertainty-estimator weights not found", path) from None
    except (SafetensorError, RuntimeError) as exc:
        raise EsvaError(f"uncertainty-estimator weights unreadable ({exc})", path) from None
    return net.eval()


class NeuralAdaptive(Controller):
    """Scalar Kalman filter whose measurement noise comes from :class:`UncertaintyNet`.

    The offset is a random walk with ``process_ms`` standard deviation per √s; each window's
    measurement variance is the net's σ² (Laplace scale b: variance 2b²). Innovations beyond
    ``gate`` standard deviations are treated as outliers (a wrong peak) and skipped, unless
    ``patience`` of them in a row agree, which means the offset really jumped.
    """

    name = "neural"

    def __init__(
        self,
        net: UncertaintyNet,
        process_ms: float = 60.0,
        gate: float = 4.0,
        patience: int = 2,
    ) -> None:
        self.net, self.process_ms, self.gate, self.patience = net, process_ms, gate, patience
        self.theta, self.var, self.rejected = 0.0, 100.0**2, 0

    def reset(self, initial_ms: float) -> None:
        self.theta, self.var, self.rejected = initial_ms, 100.0**2, 0

    def update(self, est: WindowEstimate, dt: float) -> float:
        self.var += self.process_ms**2 * max(dt, 0.0)
        if not math.isfinite(est.lag_ms):
            return self.theta
        with torch.no_grad():
            b = float(torch.exp(self.net(torch.from_numpy(est.inputs()))))
        r = 2.0 * b * b
        innovation = est.lag_ms - self.theta
        if innovation**2 > self.gate**2 * (self.var + r) and self.rejected < self.patience:
            self.rejected += 1
            return self.theta
        if self.rejected >= self.patience:  # the jump persisted: re-open the filter
            self.var = max(self.var, innovation**2)
        self.rejected = 0
        k = self.var / (self.var + r)
        self.theta += k * innovation
        self.var *= 1.0 - k
        return self.theta


@dataclass
class Backstepping(Controller):
    """Backstepping offset/drift tracker with a dynamic gain (see the module docstring)."""

    k_min: float = 0.4  # 1/s
    k_max: float = 1.6  # 1/s; k_max·hop < 1 for a stable Euler step at hop 0.5 s
    k_rate: float = 0.15  # 1/s² (drift-rate adaptation)
    gamma: float = 0.5  # gain growth per (error / scale)² per s
    decay: float = 0.5  # 1/s, gain relaxation towards k_min
    scale_ms: float = 40.0  # error scale: one 25-fps video frame
    full_confidence: float = 0.25  # windows at least this confident get the full feedback
    name: str = "backstepping"
    theta: float = 0.0
    rate: float = 0.0
    k: float = field(default=0.4)

    def reset(self, initial_ms: float) -> None:
        self.theta, self.rate, self.k = initial_ms, 0.0, self.k_min

    def update(self, est: WindowEstimate, dt: float) -> float:
        if dt <= 0:
            return self.theta
        # Predict with the drift rate first, then correct with the error against the new
        # measurement (Euler on the correction only): with the order reversed, the state would
        # run one hop of drift ahead of the measurement it has just seen.
        self.theta += dt * self.rate
        e = 0.0
        if math.isfinite(est.lag_ms):
            # An unconfident window barely moves the state (in-sync windows: ~0.1-0.4).
            weight = float(np.clip(est.confidence / self.full_confidence, 0.0, 1.0))
            e = weight * (est.lag_ms - self.theta)
        growth = self.gamma * (e / self.scale_ms) ** 2 - self.decay * (self.k - self.k_min)
        self.k = float(np.clip(self.k + dt * growth, self.k_min, self.k_max))
        self.theta += dt * self.k * e
        self.rate += dt * self.k_rate * e
        return self.theta


# ---------------------------------------------------------------------------------------------
# Metrics


@dataclass
class TrackingMetrics:
    """How well a tracked offset followed the truth (ms and s)."""

    mae_ms: float  # mean |θ_k − truth_k| over all windows
    overshoot_ms: float  # after each step of the truth: the largest excursion past the new level
    settling_s: float  # after each step: time until |error| stays within ``band_ms`` (mean)
    settled: float  # share of steps after which it did settle before the next one / the end


def tracking_metrics(
    times_s: np.ndarray,
    tracked_ms: np.ndarray,
    truth_ms: np.ndarray,
    steps: Sequence[tuple[float, float]] = (),
    band_ms: float = 40.0,
) -> TrackingMetrics:
    """Metrics of one run; ``steps`` lists (time, size) of the truth's jumps."""
    times_s, tracked_ms, truth_ms = map(np.asarray, (times_s, tracked_ms, truth_ms))
    err = tracked_ms - truth_ms
    overshoots, settles, settled = [], [], []
    for i, (t_step, size) in enumerate(steps):
        end = steps[i + 1][0] if i + 1 < len(steps) else math.inf
        after = (times_s >= t_step) & (times_s < end)
        if not after.any():
            continue
        direction = math.copysign(1.0, size)
        overshoots.append(max(0.0, float(np.max(direction * err[after]))))
        outside = np.flatnonzero(np.abs(err[after]) > band_ms)
        t_after = times_s[after]
        if len(outside) == 0:
            settles.append(0.0)
            settled.append(1.0)
        elif outside[-1] + 1 < len(t_after):
            settles.append(float(t_after[outside[-1] + 1] - t_step))
            settled.append(1.0)
        else:
            settles.append(float(t_after[-1] - t_step))  # not settled: counted up to the end
            settled.append(0.0)
    return TrackingMetrics(
        mae_ms=float(np.mean(np.abs(err))) if len(err) else float("nan"),
        overshoot_ms=float(np.mean(overshoots)) if overshoots else float("nan"),
        settling_s=float(np.mean(settles)) if settles else float("nan"),
        settled=float(np.mean(settled)) if settled else float("nan"),
    )


def make_controllers(net: UncertaintyNet | None) -> list[Controller]:
    """The four controllers with their default settings (``net`` for the neural one)."""
    controllers: list[Controller] = [FixedGain(), FuzzyGain()]
    if net is not None:
        controllers.append(NeuralAdaptive(net))
    controllers.append(Backstepping())
    return controllers
