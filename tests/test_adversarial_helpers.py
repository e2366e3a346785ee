"""benchmarks/_adversarial.py: gradient reversal, DANN's schedule, and the engine-trained MLP."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _adversarial as adv


def test_gradient_reversal_is_identity_forward_and_negated_scaled_backward():
    x = torch.randn(4, 3, requires_grad=True)
    y = adv.GradientReversal.apply(x, 0.5)
    assert torch.equal(y, x)
    (y * torch.arange(3.0)).sum().backward()
    assert torch.allclose(x.grad, -0.5 * torch.arange(3.0).expand(4, 3))


def test_reversal_weight_ramps_from_zero_to_lam():
    assert adv.reversal_weight(2.0, 0.0) == 0.0
    assert adv.reversal_weight(2.0, 1.0) == pytest.approx(2.0, abs=1e-3)
    ramp = [adv.reversal_weight(1.0, p) for p in np.linspace(0, 1, 11)]
    assert all(a < b for a, b in itertools.pairwise(ramp))


def _toy(n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    corpus = np.array(["a", "b"])[rng.integers(0, 2, n)]
    x = rng.normal(size=(n, 12)).astype(np.float32)
    x[np.arange(n), y] += 3.0  # the emotion
    x[:, 6] += 4.0 * (corpus == "a")  # a corpus offset
    return x, y, corpus


@pytest.mark.parametrize(
    "options", [{}, {"adversarial": 1.0}, {"mixup": 0.4}, {"adversarial": 1.0, "mixup": 0.4}]
)
def test_fit_robust_learns_and_repeats_bit_for_bit(options):
    x, y, corpus = _toy()
    config = adv.RobustConfig(epochs=6, batch_size=64, hidden=32, lr=3e-3, **options)
    p = adv.fit_robust(x, y, corpus, 3, config)(x)
    assert p.shape == (len(x), 3)
    assert np.allclose(p.sum(1), 1.0, atol=1e-5)
    assert (p.argmax(1) == y).mean() > 0.85
    again = adv.fit_robust(x, y, corpus, 3, config)(x)
    assert np.array_equal(p, again)  # seeded: init, batch order, mixup draws
    other = adv.fit_robust(x, y, corpus, 3, adv.RobustConfig(**{**config.__dict__, "seed": 1}))
    assert not np.array_equal(p, other(x))
