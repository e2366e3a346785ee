"""Seeded waveform augmentation (esva.media.augment): lengths, levels, determinism, channels."""

from __future__ import annotations

import numpy as np
import pytest

from esva.media.augment import (
    augment,
    codec,
    gain,
    mix_at_snr,
    reverb,
    speed,
    telephone,
    to_length,
)

SR = 16_000


def _tone(seconds: float = 1.0, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_speed_changes_length_and_gain_changes_level():
    x = _tone()
    assert abs(len(speed(x, 1.1)) - len(x) / 1.1) < 5
    assert abs(len(speed(x, 0.9)) - len(x) / 0.9) < 5
    assert np.isclose(np.abs(gain(x, -20)).max(), np.abs(x).max() / 10, rtol=1e-4)


def test_mix_reaches_the_asked_snr():
    rng = np.random.default_rng(0)
    x = _tone()
    noise = rng.standard_normal(4000).astype(np.float32)  # shorter: tiled
    y = mix_at_snr(x, noise, 10.0)
    added = y - x
    snr = 10 * np.log10(np.mean(x**2) / np.mean(added**2))
    assert abs(snr - 10.0) < 0.1 and len(to_length(noise, 5)) == 5


def test_telephone_removes_the_band_above_3400_hz():
    x = _tone(hz=6000.0) + _tone(hz=1000.0)
    y = telephone(x)
    spectrum = np.abs(np.fft.rfft(y))
    freqs = np.fft.rfftfreq(len(y), 1 / SR)
    high = spectrum[np.abs(freqs - 6000) < 20].max()
    mid = spectrum[np.abs(freqs - 1000) < 20].max()
    assert len(y) == len(x) and high < 0.01 * mid


def test_reverb_keeps_length_and_smears_energy():
    rng = np.random.default_rng(1)
    x = np.zeros(SR, np.float32)
    x[100] = 1.0
    y = reverb(x, 0.5, rng)
    assert len(y) == len(x) and np.abs(y[2000:]).sum() > 0.1


def test_codec_round_trip_keeps_length_and_signal():
    x = _tone(0.5)
    y = codec(x, "libopus", 16_000)
    assert len(y) == len(x) and np.isfinite(y).all() and 0.05 < np.abs(y).max() <= 1.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_augment_is_seeded_bounded_and_described(seed):
    x = _tone(1.5)
    babble = [_tone(1.0, 330.0), _tone(0.7, 150.0)]
    a, steps = augment(x, seed, babble)
    b, same = augment(x, seed, babble)
    assert steps == same and np.array_equal(a, b)
    assert a.dtype == np.float32 and np.isfinite(a).all() and np.abs(a).max() <= 1.0
    assert steps[0].startswith("speed") and steps[-1].startswith("gain")
    assert 0.85 * len(x) < len(a) < 1.15 * len(x)
    other, _ = augment(x, seed + 100, babble)
    assert not np.array_equal(a, other)
