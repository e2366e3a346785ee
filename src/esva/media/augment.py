"""Seeded waveform augmentation for training a voice that travels across recording set-ups.

Each function takes and returns 16 kHz mono float32 samples in [-1, 1]. ``augment`` draws one
chain per clip from a seed (the same clip and seed always give the same copy, so augmented
copies are encoded once and cached instead of re-encoded every epoch):

* speed perturbation 0.9-1.1 (tempo and pitch together, +-1.7 semitones: Kaldi's recipe,
  resampled with soxr),
* gain +-10 dB,
* additive noise (white/pink) or babble (other speakers' clips) at 0-20 dB SNR,
* synthetic room reverberation (exponentially decaying noise impulse response, RT60 0.2-0.8 s),
* the 8 kHz telephone band (300-3400 Hz) or a low-bitrate codec round trip through PyAV.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

SR = 16_000


def _fit(x: np.ndarray) -> np.ndarray:
    """Clip-safe float32: rescale when a chain pushed the peak past full scale."""
    peak = float(np.abs(x).max()) if len(x) else 0.0
    if peak > 0.999:
        x = x * (0.999 / peak)
    return np.nan_to_num(x).astype(np.float32)


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (tempo and pitch), by resampling."""
    import soxr

    return soxr.resample(x, SR * factor, SR).astype(np.float32)


def gain(x: np.ndarray, db: float) -> np.ndarray:
    return x * np.float32(10 ** (db / 20))


def to_length(noise: np.ndarray, n: int) -> np.ndarray:
    """``noise`` tiled or cut to ``n`` samples."""
    if len(noise) < n:
        noise = np.tile(noise, int(np.ceil(n / max(len(noise), 1))))
    return np.asarray(noise[:n], np.float32)


def mix_at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``x`` plus ``noise`` (tiled or cut to length) scaled to ``snr_db``."""
    noise = to_length(noise, len(x))
    px = float(np.mean(x**2)) + 1e-12
    pn = float(np.mean(noise**2)) + 1e-12
    return x + noise * np.float32(np.sqrt(px / (pn * 10 ** (snr_db / 10))))


def coloured_noise(n: int, rng: np.random.Generator, colour: str = "white") -> np.ndarray:
    white = rng.standard_normal(n).astype(np.float32)
    if colour == "white":
        return white
    spectrum = np.fft.rfft(white)
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))  # 1/f power
    return np.fft.irfft(spectrum, n).astype(np.float32)


def reverb(x: np.ndarray, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a synthetic impulse response: noise with a 60 dB decay over ``rt60`` s."""
    from scipy.signal import fftconvolve

    t = np.arange(int(rt60 * SR)) / SR
    ir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)
    ir[0] = 1.0
    ir /= np.sqrt(np.sum(ir**2))
    return fftconvolve(x, ir)[: len(x)].astype(np.float32)


def telephone(x: np.ndarray) -> np.ndarray:
    """The narrowband telephone channel: 8 kHz, 300-3400 Hz, back to 16 kHz."""
    import soxr
    from scipy.signal import butter, sosfilt

    narrow = soxr.resample(x, SR, 8000)
    sos = butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos")
    return soxr.resample(sosfilt(sos, narrow), 8000, SR).astype(np.float32)[: len(x)]


def codec(x: np.ndarray, name: str = "libopus", bitrate: int = 12_000) -> np.ndarray:
    """Encode and decode through PyAV (a low-bitrate Opus or MP3 round trip)."""
    import av

    fmt = {"libopus": "ogg", "libmp3lame": "mp3"}[name]
    rate = 48_000 if name == "libopus" else SR
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(name, rate=rate)
        stream.bit_rate = bitrate
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            (np.clip(x, -1, 1) * 32767).astype(np.int16)[None], format="s16", layout="mono"
        )
        frame.sample_rate = SR
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buf.seek(0)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SR)
    parts = []
    with av.open(buf) as inp:
        for frame in inp.decode(audio=0):
            parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    y = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if len(y) < len(x):
        y = np.pad(y, (0, len(x) - len(y)))
    return y[: len(x)].astype(np.float32)


def augment(
    x: np.ndarray, seed: int, babble: Sequence[np.ndarray] = ()
) -> tuple[np.ndarray, list[str]]:
    """One seeded chain (module doc) and its description, e.g. ``["speed 1.06", "noise 12 dB"]``."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float32)
    steps: list[str] = []
    f = float(rng.uniform(0.9, 1.1))
    x, steps = speed(x, f), [f"speed {f:.2f}"]
    if rng.random() < 0.4:
        rt = float(rng.uniform(0.2, 0.8))
        x = reverb(x, rt, rng)
        steps.append(f"reverb {rt:.2f} s")
    if rng.random() < 0.6:
        snr = float(rng.uniform(0, 20))
        if babble and rng.random() < 0.5:
            others = [babble[int(i)] for i in rng.choice(len(babble), min(3, len(babble)))]
            noise = sum(  # each talker at the same power
                to_length(o, len(x)) / (np.sqrt(np.mean(o**2)) + 1e-6) for o in others
            )
            x = mix_at_snr(x, np.asarray(noise, np.float32), snr)
            steps.append(f"babble {snr:.0f} dB")
        else:
            colour = "pink" if rng.random() < 0.5 else "white"
            x = mix_at_snr(x, coloured_noise(len(x), rng, colour), snr)
            steps.append(f"{colour} noise {snr:.0f} dB")
    channel = rng.random()
    if channel < 0.25:
        x = telephone(x)
        steps.append("telephone")
    elif channel < 0.45:
        x = codec(x, "libopus", int(rng.choice([8_000, 12_000, 16_000])))
        steps.append("opus codec")
    g = float(rng.uniform(-10, 10))
    x = gain(x, g)
    steps.append(f"gain {g:+.0f} dB")
    return _fit(x), steps


__all__ = [
    "augment",
    "codec",
    "coloured_noise",
    "gain",
    "mix_at_snr",
    "reverb",
    "speed",
    "telephone",
    "to_length",
]
