"""Reliability-weighted late fusion of calibrated per-modality experts (the shipped default).

Each expert (the voice model, the face-expression CNN) gives a calibrated distribution
``p_m`` over the same classes (:mod:`esva.fusion.label_spaces` maps them there). They are
combined by a log-linear opinion pool (:func:`log_linear_pool`)::

    log p(c) = sum_m w_m log p_m(c) - log Z

with weights that follow how much each expert can be trusted on THIS clip
(:func:`reliability_weights`)::

    r_m  = q_m * c_m ** gamma            reliability: presence q_m times confidence c_m
    pi_m = b_m r_m / sum_k b_k r_k        relative weight; b_m a per-expert base weight
    s    = sum_m pi_m q_m                 overall sharpness: how present the evidence is
    w_m  = s * pi_m

* ``q_m`` (presence, in [0, 1]) is what the clip gives the expert: for the face, the share of
  the clip's span with a tracked face (face coverage); for the voice, the share of the clip
  that is active speech (:func:`speech_presence`, an energy VAD), saturating at
  ``speech_full`` (shipped: 0.4, the 25th percentile of that share over the voice model's
  RAVDESS training clips, whose sentences sit in about as much silence as speech). An energy
  VAD counts loud non-speech (music, babble) as speech; steady noise and tones it does not.
* ``c_m`` (confidence, in [0, 1]) is one minus the expert's normalised entropy
  (:func:`entropy_confidence`); ``gamma`` says how much it moves the relative weights
  (0: not at all).
* ``b_m`` is the only per-expert free parameter: with two experts, one number (the face's
  share ``alpha``; the voice gets ``1 - alpha``).

Properties the tests check: a modality with ``q_m = 0`` (no face found, a silent track) has
exactly no effect (its ``w_m`` is 0 and the others' weights are what they would be without
it); one expert with full presence returns its own calibrated distribution unchanged (``w =
1``); with ``gamma = 0`` and full presence the weights are the base weights. Low presence
flattens the answer towards uniform (``s < 1``): a clip with little speech and no face says
little, and the probabilities say so.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from esva.errors import EsvaError
from esva.media.vad import vad_frames  # re-exported: the fusion's voice presence reads it

LOG_FLOOR = 1e-6  # probabilities are floored here before the log: one expert's 0 is no veto


def log_linear_pool(probs: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """The log-linear opinion pool: ``p(c) ∝ prod_m p_m(c) ** w_m`` over the experts given.

    ``probs``: expert -> distribution over the same classes, shape ``(C,)`` or ``(N, C)``;
    ``weights``: expert -> w_m >= 0 (an expert missing from ``weights`` counts 0). With all
    weights 0 the result is uniform.
    """
    if not probs:
        raise EsvaError("no expert to fuse")
    shapes = {np.shape(p) for p in probs.values()}
    if len(shapes) != 1:
        raise EsvaError(f"experts disagree on the class space: shapes {sorted(shapes)}")
    logp = None
    for name, p in probs.items():
        w = float(weights.get(name, 0.0))
        if not np.isfinite(w) or w < 0:
            raise EsvaError(f"fusion weight of {name!r} must be finite and >= 0, got {w}")
        if w == 0.0:
            continue
        term = w * np.log(np.clip(np.asarray(p, np.float64), LOG_FLOOR, 1.0))
        logp = term if logp is None else logp + term
    shape = next(iter(shapes))
    if logp is None:
        return np.full(shape, 1.0 / shape[-1])
    logp = logp - logp.max(axis=-1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(axis=-1, keepdims=True)


def reliability_weights(
    presence: Mapping[str, float],
    confidence: Mapping[str, float],
    base: Mapping[str, float],
    gamma: float = 0.0,
) -> dict[str, float]:
    """Fusion weights ``w_m`` from presence ``q_m``, confidence ``c_m`` and base ``b_m``.

    See the module doc for the equations. Experts are those in ``presence``; one without a
    base weight or a confidence is an error (nothing is assumed silently).
    """
    r: dict[str, float] = {}
    for name, q in presence.items():
        if name not in base:
            raise EsvaError(f"no base weight for the {name!r} expert")
        q = float(np.clip(q, 0.0, 1.0))
        c = float(np.clip(confidence.get(name, 1.0), 0.0, 1.0))
        r[name] = float(base[name]) * q * (c**gamma if gamma else 1.0)
    total = sum(r.values())
    if total <= 0:
        return {name: 0.0 for name in presence}
    pi = {name: v / total for name, v in r.items()}
    s = sum(pi[name] * float(np.clip(presence[name], 0.0, 1.0)) for name in pi)
    return {name: s * pi[name] for name in pi}


def entropy_confidence(p: np.ndarray) -> float:
    """``1 - H(p) / log C``: 0 for a uniform distribution, 1 for a one-hot one."""
    p = np.clip(np.asarray(p, np.float64), 0.0, 1.0)
    if p.size < 2 or p.sum() <= 0:
        return 0.0
    p = p / p.sum()
    nz = p[p > 0]
    h = float(-(nz * np.log(nz)).sum())
    return float(np.clip(1.0 - h / np.log(p.size), 0.0, 1.0))


def speech_presence(active_share: float, speech_full: float) -> float:
    """Voice presence ``q``: the active-speech share of the clip, full at ``speech_full``."""
    if speech_full <= 0:
        raise EsvaError(f"speech_full must be positive, got {speech_full}")
    return float(np.clip(active_share / speech_full, 0.0, 1.0))


__all__ = [
    "entropy_confidence",
    "log_linear_pool",
    "reliability_weights",
    "speech_presence",
    "vad_frames",
]
