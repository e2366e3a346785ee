"""Slaney mel filter banks (numpy), for Whisper's log-mel and the sync space's.

The formula librosa (``librosa.filters.mel(htk=False, norm="slaney")``) and transformers
(``audio_utils.mel_filter_bank(norm="slaney", mel_scale="slaney")``) compute, in ~20 lines: the
tests check it against transformers'. Carried here because importing ``transformers.audio_utils``
costs ``import transformers`` (0.7-1.4 s) in the start-up of ``esva predict``.
"""

from __future__ import annotations

import numpy as np

_F_BREAK = 1000.0  # Hz: the scale is linear below, logarithmic above
_MEL_BREAK = 15.0  # the mel value at 1 kHz (3 mels per 200 Hz)
_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: 3 mels per 200 Hz up to 1 kHz, then logarithmic."""
    freq = np.asarray(freq, dtype=np.float64)
    mels = 3.0 * freq / 200.0
    high = freq >= _F_BREAK
    mels[high] = _MEL_BREAK + np.log(freq[high] / _F_BREAK) / _LOG_STEP
    return mels


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mels = np.asarray(mels, dtype=np.float64)
    freq = 200.0 * mels / 3.0
    high = mels >= _MEL_BREAK
    freq[high] = _F_BREAK * np.exp(_LOG_STEP * (mels[high] - _MEL_BREAK))
    return freq


def mel_filter_bank(
    n_freqs: int, n_mels: int, fmin: float, fmax: float, sample_rate: int
) -> np.ndarray:
    """(n_freqs, n_mels) float64 triangular filters, Slaney-normalised (constant energy per band).

    ``n_freqs`` FFT bins spread evenly over ``[0, sample_rate // 2]``; ``n_mels + 2`` edges evenly
    spaced in mels over ``[fmin, fmax]``; filter ``m`` rises from edge ``m`` to ``m + 1`` and
    falls to ``m + 2``, scaled by ``2 / (edge[m + 2] - edge[m])``.
    """
    lo, hi = hz_to_mel(np.array([fmin, fmax]))
    edges = mel_to_hz(np.linspace(lo, hi, n_mels + 2))
    fft_freqs = np.linspace(0, sample_rate // 2, n_freqs)
    slopes = edges[None, :] - fft_freqs[:, None]
    widths = np.diff(edges)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    return filters * (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))
