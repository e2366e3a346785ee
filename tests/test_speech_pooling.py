"""Speech-only pooling: the energy VAD's frames become the Whisper stream's mask, and the pooled
voice model's statistics over that mask are the benchmark's features of the same clip."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from esva.encoders import create_encoder
from esva.media.types import AudioClip
from esva.media.vad import MIN_SPEECH_FRAMES, speech_frames

SR = 16_000


def _pause_speech_pause(seed: int = 0) -> np.ndarray:
    """1 s of faint noise, 1 s of a loud modulated tone, 1 s of faint noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(SR) / SR
    burst = 0.3 * np.sin(2 * np.pi * 200 * t) * (1.2 + np.sin(2 * np.pi * 3 * t))
    noise = 0.003 * rng.standard_normal(3 * SR)
    noise[SR : 2 * SR] += burst
    return noise.astype(np.float32)


def test_speech_frames_keep_the_loud_middle_only():
    mask = speech_frames(_pause_speech_pause(), SR, 150, 50.0)
    assert mask.shape == (150,)
    assert mask[55:95].all()  # well inside the burst (frames 50-99)
    assert not mask[:45].any() and not mask[105:].any()


@pytest.mark.parametrize("kind", ["silence", "steady noise", "too short"])
def test_no_speech_falls_back_to_every_frame(kind):
    rng = np.random.default_rng(1)
    samples = {
        "silence": np.zeros(2 * SR, np.float32),
        "steady noise": (0.01 * rng.standard_normal(2 * SR)).astype(np.float32),
        "too short": np.ones(100, np.float32),
    }[kind]
    mask = speech_frames(samples, SR, 100, 50.0)
    assert mask.all() or mask.sum() >= MIN_SPEECH_FRAMES
    if kind in ("silence", "too short"):
        assert mask.all()


def test_whisper_speech_only_masks_the_stream_and_nothing_else():
    clip = AudioClip(_pause_speech_pause(), SR)
    plain = create_encoder("whisper-tiny", pretrained=False, layer="stack").encode(clip)
    speech = create_encoder(
        "whisper-tiny", pretrained=False, layer="stack", speech_only=True
    ).encode(clip)
    np.testing.assert_array_equal(plain.features, speech.features)  # same frames, same values
    assert plain.mask.all()
    np.testing.assert_array_equal(speech.mask, speech_frames(clip.samples, SR, 150, 50.0))
    assert 0.25 < speech.mask.mean() < 0.45
    assert speech.record_dict()["layer"] == "stack"  # what explain's adapter checks


def test_runtime_statistics_match_the_benchmark_features():
    """The shipped model pools over the encoder's mask; the benchmark pools its cached features
    with ``pool_states``: the same numbers for the same clip."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import _xcorpus_features as xf
    from esva.model.pooled_voice import PooledVoiceConfig, PooledVoiceModel

    samples = _pause_speech_pause(seed=3)
    encoder = create_encoder("whisper-tiny", pretrained=False, layer="stack", speech_only=True)
    stream = encoder.encode(AudioClip(samples, SR))
    states = xf._all_states(encoder, samples)  # (n_states, T, D)
    expected = xf.pool_states(states, samples, speech=True).reshape(-1)
    n_states, _, dim = states.shape
    model = PooledVoiceModel(PooledVoiceConfig(["a", "b"], [("whisper-tiny", n_states, dim)]))
    got = model.statistics(
        torch.from_numpy(stream.features)[None], torch.from_numpy(stream.mask)[None]
    )[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    everything = xf.pool_states(states, samples, speech=False).reshape(-1)
    assert not np.allclose(got, everything, atol=1e-3)  # the pauses did change the statistics
