"""``prosody``: Praat F0, voicing, jitter, shimmer, energy, tilt and HNR at 50 Hz."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from esva.encoders import create_encoder
from esva.encoders.prosody import COLUMNS, ProsodyConfig, ProsodyEncoder
from esva.errors import EsvaError
from esva.media.types import AudioClip

SR = 16_000
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RAVDESS_01 = SHARED / "ravdess_speech" / "Actor_01"
C = {name: i for i, name in enumerate(COLUMNS)}


@pytest.fixture(scope="module")
def enc() -> ProsodyEncoder:
    return ProsodyEncoder()


def sawtooth(f0: float, seconds: float = 3.0, amp: float = 0.3, rate: int = SR) -> np.ndarray:
    """Band-limited sawtooth (harmonics up to Nyquist), peak ``amp``.

    A naive ``(f0 t) mod 1`` sawtooth aliases: where the period is not a whole number of samples
    its wrap points form a slower pattern, which Praat rightly reports as jitter or even as the
    sub-octave (330 Hz -> 165 Hz at 16 kHz).
    """
    t = np.arange(int(seconds * rate)) / rate
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, int(rate / 2 // f0) + 1))
    return (amp * x / np.abs(x).max()).astype(np.float32)


def pulse_train(f0: float, jitter: float, seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Glottal-like pulses (decaying 800-Hz resonance) with random period perturbation."""
    rng = np.random.default_rng(seed)
    x = np.zeros(int(seconds * SR))
    kernel = np.exp(-np.arange(160) / 30.0) * np.sin(2 * np.pi * 800 * np.arange(160) / SR)
    t = 0.01
    while t < seconds - 0.02:
        i = int(t * SR)
        x[i : i + 160] += kernel
        t += (1.0 / f0) * (1.0 + jitter * rng.standard_normal())
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def voiced_rows(features: np.ndarray) -> np.ndarray:
    return features[features[:, C["voiced"]] > 0]


@pytest.mark.parametrize("f0", [110.0, 200.0, 330.0])
def test_sawtooth_f0_is_recovered(enc: ProsodyEncoder, f0: float) -> None:
    out = enc.encode(AudioClip(sawtooth(f0), SR))
    v = voiced_rows(out.features)
    assert len(v) > 0.9 * len(out.features)
    measured = 100.0 * 2.0 ** v[:, C["log2_f0"]]
    assert abs(np.median(measured) - f0) < 0.01 * f0
    assert np.abs(v[:, C["f0_semitones"]]).max() < 0.2  # steady tone: no melody
    assert np.median(v[:, C["jitter_local"]]) < 0.002  # perfectly periodic
    assert np.median(v[:, C["hnr_db"]]) > 30
    assert np.median(v[:, C["voicing_strength"]]) > 0.9


def test_frame_geometry(enc: ProsodyEncoder) -> None:
    x = sawtooth(200.0, seconds=1.234)
    out = enc.encode(AudioClip(x, SR, start_s=2.5))
    assert out.features.shape == (len(x) // 320, len(COLUMNS)) and out.features.dtype == np.float32
    assert out.fps == 50.0 and out.start_s == 2.5 and out.mask.all()
    assert out.record.name == "prosody" and out.record.weights_sha256 == ""
    other = enc.encode(AudioClip(sawtooth(200.0, seconds=1.0, rate=22_050), 22_050))
    assert out.fps == other.fps and other.features.shape[0] == 50
    assert abs(100 * 2 ** np.median(voiced_rows(other.features)[:, C["log2_f0"]]) - 200) < 2


def test_silence_is_unvoiced_and_finite(enc: ProsodyEncoder) -> None:
    out = enc.encode(AudioClip(np.zeros(3 * SR, np.float32), SR))
    assert out.features.shape == (150, len(COLUMNS))
    assert np.isfinite(out.features).all()
    assert not out.features[:, C["voiced"]].any()
    assert np.all(out.features[:, C["energy_db"]] == -100.0)
    for short in (0, 1, 300, 700):  # shorter than Praat's pitch window: no error, no NaN
        f = enc.encode(AudioClip(sawtooth(200.0)[:short], SR)).features
        assert f.shape[0] == (max(1, short // 320) if short else 0) and np.isfinite(f).all()


def test_louder_is_higher_energy(enc: ProsodyEncoder) -> None:
    quiet = enc.encode(AudioClip(sawtooth(150.0, amp=0.05), SR)).features
    loud = enc.encode(AudioClip(sawtooth(150.0, amp=0.2), SR)).features
    gain = loud[5:-5, C["energy_db"]] - quiet[5:-5, C["energy_db"]]
    np.testing.assert_allclose(gain, 20 * math.log10(4), atol=0.05)  # 4x amplitude = +12.04 dB
    # a crescendo has a positive energy slope
    ramp = sawtooth(150.0) * np.linspace(0.05, 1.0, 3 * SR, dtype=np.float32)
    assert np.median(enc.encode(AudioClip(ramp, SR)).features[:, C["energy_delta"]]) > 0


def test_jitter_and_hnr_follow_perturbation(enc: ProsodyEncoder) -> None:
    clean = voiced_rows(enc.encode(AudioClip(pulse_train(150.0, 0.0), SR)).features)
    shaky = voiced_rows(enc.encode(AudioClip(pulse_train(150.0, 0.03), SR)).features)
    assert np.median(shaky[:, C["jitter_local"]]) > 0.01 > np.median(clean[:, C["jitter_local"]])
    rng = np.random.default_rng(1)
    tone = sawtooth(200.0)
    noisy = tone + 0.1 * rng.standard_normal(len(tone)).astype(np.float32)
    hnr_clean = np.median(voiced_rows(enc.encode(AudioClip(tone, SR)).features)[:, C["hnr_db"]])
    hnr_noisy = np.median(voiced_rows(enc.encode(AudioClip(noisy, SR)).features)[:, C["hnr_db"]])
    assert hnr_noisy < hnr_clean - 10
    assert 2.0 < hnr_noisy < 8.0  # true HNR: 0.03 / 0.01 -> 4.8 dB


def test_spectral_tilt(enc: ProsodyEncoder) -> None:
    from scipy.signal import butter, sosfilt

    rng = np.random.default_rng(2)
    white = (0.1 * rng.standard_normal(2 * SR)).astype(np.float32)
    dull = sosfilt(butter(2, 800, fs=SR, output="sos"), white).astype(np.float32)
    tilt_white = np.median(enc.encode(AudioClip(white, SR)).features[:, C["spectral_tilt"]])
    tilt_dull = np.median(enc.encode(AudioClip(dull, SR)).features[:, C["spectral_tilt"]])
    assert abs(tilt_white) < 1.0  # flat spectrum
    assert tilt_dull < -5.0  # 12 dB/octave roll-off above 800 Hz


def test_unvoiced_gap_is_interpolated(enc: ProsodyEncoder) -> None:
    x = np.concatenate([sawtooth(150.0, 1.0), np.zeros(SR // 2, np.float32), sawtooth(250.0, 1.0)])
    f = enc.encode(AudioClip(x, SR)).features
    gap = slice(60, 70)  # well inside the silence (frames 50-75)
    assert not f[gap, C["voiced"]].any()
    hz = 100 * 2 ** f[:, C["log2_f0"]]
    assert np.all((hz[gap] > 150) & (hz[gap] < 250)) and np.all(np.diff(hz[gap]) > 0)
    assert np.all(f[gap, C["jitter_local"]] == 0) and np.all(f[gap, C["hnr_db"]] == 0)
    # semitones are relative to the clip's median voiced F0 (between 150 and 250 Hz)
    span = f[:, C["f0_semitones"]].max() - f[:, C["f0_semitones"]].min()
    assert abs(span - 12 * math.log2(250 / 150)) < 0.3


def test_bad_audio_is_a_user_error() -> None:
    enc = create_encoder("prosody")
    assert isinstance(enc, ProsodyEncoder) and enc.dim == len(COLUMNS) == 10
    with pytest.raises(EsvaError, match="mono"):
        enc.encode(AudioClip(np.zeros((2, 1600), np.float32), SR))
    bad = sawtooth(100.0, 0.5)
    bad[100] = np.nan
    with pytest.raises(EsvaError, match="NaN"):
        enc.encode(AudioClip(bad, SR))
    assert ProsodyEncoder(ProsodyConfig(pitch_ceiling=300.0)).config.pitch_ceiling == 300.0


def _read_audio(path: Path) -> np.ndarray:
    """Mono float32 samples at 16 kHz, decoded with PyAV."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=SR)
    with av.open(str(path)) as container:
        frames = [r for f in container.decode(audio=0) for r in resampler.resample(f)]
    frames += resampler.resample(None)  # flush
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])


@pytest.mark.shared
@pytest.mark.skipif(not RAVDESS_01.is_dir(), reason=f"shared RAVDESS speech absent ({RAVDESS_01})")
def test_ravdess_angry_vs_neutral(enc: ProsodyEncoder) -> None:
    takes = {"neutral": "03-01-01-01-01-01-01.flac", "angry": "03-01-05-02-01-01-01.flac"}
    stats = {}
    for emotion, name in takes.items():
        x = _read_audio(RAVDESS_01 / name)
        out = enc.encode(AudioClip(x, SR))
        assert out.fps == 50.0 and out.features.shape == (len(x) // 320, 10)
        assert np.isfinite(out.features).all()
        v = voiced_rows(out.features)
        assert len(v) > 10
        stats[emotion] = {
            "mean_f0_hz": float(np.mean(100 * 2 ** v[:, C["log2_f0"]])),
            "mean_voiced_energy_db": float(np.mean(v[:, C["energy_db"]])),
            "voiced_share": float(len(v) / len(out.features)),
        }
        print(emotion, name, {k: round(val, 3) for k, val in stats[emotion].items()})
    # high-arousal speech: higher pitch and louder (a large effect for this actor: ~3x, +25 dB)
    assert stats["angry"]["mean_f0_hz"] > 1.5 * stats["neutral"]["mean_f0_hz"]
    assert stats["angry"]["mean_voiced_energy_db"] > stats["neutral"]["mean_voiced_energy_db"]
