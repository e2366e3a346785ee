"""The prosody encoder analyses long audio in chunks; the result must match one pass."""

import numpy as np

from esva.encoders.prosody import ProsodyConfig, ProsodyEncoder
from esva.media.types import AudioClip


def test_chunked_equals_one_pass():
    sr = 16000
    t = np.arange(6 * sr) / sr
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.5 * t)  # a gliding voice-like tone with pauses
    x = np.sin(2 * np.pi * np.cumsum(f0) / sr) * (np.sin(2 * np.pi * 0.7 * t) > -0.3)
    clip = AudioClip((0.3 * x).astype(np.float32), sr)
    whole = ProsodyEncoder(ProsodyConfig(chunk_s=600.0)).encode(clip).features
    chunked = ProsodyEncoder(ProsodyConfig(chunk_s=1.0, context_s=1.0)).encode(clip).features
    assert whole.shape == chunked.shape == (300, 10)
    voiced = whole[:, 2] > 0
    assert voiced.mean() > 0.5
    assert np.mean(whole[:, 2] == chunked[:, 2]) > 0.97  # voicing decisions
    assert np.corrcoef(whole[voiced, 1], chunked[voiced, 1])[0, 1] > 0.99  # F0 contour
    np.testing.assert_allclose(chunked[:, 6], whole[:, 6], atol=1e-3)  # energy (dB)
