"""HuBERT / wav2vec2 / WavLM encoders, on tiny random checkpoints saved to disk (no download)."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch
from transformers import (
    HubertConfig,
    HubertModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
    WavLMConfig,
)

from esva.encoders import create_encoder
from esva.encoders.ssl_audio import hubert
from esva.errors import EsvaError
from esva.media.types import AudioClip

SR = 16_000
TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    conv_dim=(32,) * 7,  # the real kernels and strides are kept: the frame rate is real
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)
CONFIGS = {
    "hubert": HubertConfig,
    "wav2vec2": Wav2Vec2Config,
    "wavlm": WavLMConfig,
}


def _speechlike(seconds: float, seed: int = 0, rate: int = SR) -> np.ndarray:
    """Noise with a slow envelope and a DC offset (so normalisation visibly matters)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 1.3 * t)
    return (0.2 * envelope * rng.standard_normal(n) + 0.05).astype(np.float32)


def _save(directory, seed: int = 0, **overrides) -> HubertModel:
    torch.manual_seed(seed)
    model = HubertModel(HubertConfig(**{**TINY, **overrides})).eval()
    model.save_pretrained(directory)
    return model


@pytest.fixture(scope="module", params=["layer", "group"])
def norm_dir(request, tmp_path_factory):
    """Large-style (layer-norm conv features) and base-style (GroupNorm over time) checkpoints."""
    directory = tmp_path_factory.mktemp(f"hubert-{request.param}")
    _save(directory, feat_extract_norm=request.param)
    return directory


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_shapes_frame_rate_and_start(name):
    encoder = create_encoder(name, pretrained=False, config=CONFIGS[name](**TINY))
    stride = math.prod(encoder.model.config.conv_stride)
    clip = AudioClip(_speechlike(2.5), SR, start_s=1.25)
    out = encoder.encode(clip)
    expected_frames = int(encoder.model._get_feat_extract_output_lengths(len(clip.samples)))
    assert out.features.shape == (expected_frames, 32)
    assert out.features.dtype == np.float32
    assert out.fps == SR / stride == 50.0
    assert abs(out.features.shape[0] - clip.duration_s * out.fps) <= 1
    assert out.start_s == 1.25
    assert out.mask.all() and out.mask.shape == (expected_frames,)
    assert np.isfinite(out.features).all()
    assert out.record.name == name and out.record.version.startswith("random-init#config-")
    assert len(out.record.weights_sha256) == 64


def test_frame_rate_follows_the_config_strides():
    strides = (5, 2, 2, 2, 2, 2, 4)  # 640 samples: 25 frames a second
    encoder = hubert(pretrained=False, config=HubertConfig(**TINY, conv_stride=strides))
    out = encoder.encode(AudioClip(_speechlike(2.0), SR))
    assert out.fps == SR / math.prod(strides) == 25.0
    assert abs(out.features.shape[0] - 2.0 * 25) <= 1


def test_layers_and_normalisation_match_the_model_run_directly(tmp_path):
    # Layer-norm conv features: a group-norm model would cancel the DC offset and gain itself.
    model = _save(tmp_path, feat_extract_norm="layer")
    samples = 3.0 * _speechlike(1.5, seed=3) + 0.3
    clip = AudioClip(samples, SR)
    with torch.inference_mode():
        # No preprocessor config in the directory: Wav2Vec2FeatureExtractor's default normalises.
        normalised = Wav2Vec2FeatureExtractor()(samples, sampling_rate=SR, return_tensors="pt")
        hidden = model(normalised.input_values, output_hidden_states=True).hidden_states
        raw_last = model(torch.from_numpy(samples)[None]).last_hidden_state[0].numpy()

    mean_last_two = ((hidden[-2] + hidden[-1]) / 2)[0].numpy()
    got = hubert(path=tmp_path, layer="-2..-1").encode(clip)
    np.testing.assert_allclose(got.features, mean_last_two, atol=1e-4)
    assert got.record.layer == "-2..-1 mean"
    np.testing.assert_allclose(
        hubert(path=tmp_path, layer=0).encode(clip).features, hidden[0][0].numpy(), atol=1e-4
    )

    # A preprocessor config that says do_normalize=false is honoured (HuBERT-base ships one).
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "feature_extractor_type": "Wav2Vec2FeatureExtractor",
                "do_normalize": False,
                "sampling_rate": SR,
                "feature_size": 1,
                "padding_value": 0.0,
            }
        )
    )
    unnormalised = hubert(path=tmp_path).encode(clip).features
    np.testing.assert_allclose(unnormalised, raw_last, atol=1e-4)
    assert not np.allclose(
        unnormalised, hubert(path=tmp_path, normalize=True).encode(clip).features, atol=1e-3
    )


def test_other_sample_rates_are_resampled():
    encoder = hubert(pretrained=False, config=HubertConfig(**TINY))
    t16 = np.arange(SR * 2) / SR
    t48 = np.arange(48_000 * 2) / 48_000

    def tone(t: np.ndarray) -> np.ndarray:
        return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 1234 * t)).astype(
            np.float32
        )

    at16 = encoder.encode(AudioClip(tone(t16), SR)).features
    at48 = encoder.encode(AudioClip(tone(t48), 48_000)).features
    assert at16.shape == at48.shape
    cos = (at16 * at48).sum(1) / np.linalg.norm(at16, axis=1) / np.linalg.norm(at48, axis=1)
    assert cos[5:-5].min() > 0.99


@pytest.mark.parametrize("layer", [0, "last"])
def test_chunked_equals_one_pass_away_from_borders(norm_dir, layer):
    clip = AudioClip(_speechlike(8.0, seed=1), SR, start_s=0.5)
    one_pass = hubert(path=norm_dir, layer=layer, chunk_s=60)
    whole = one_pass.encode(clip)
    chunked = hubert(path=norm_dir, layer=layer, chunk_s=3.0, context_s=1.5).encode(clip)
    assert chunked.features.shape == whole.features.shape
    assert chunked.start_s == whole.start_s and chunked.fps == whole.fps
    if layer == 0:
        # Conv features and the positional conv (±8 frames here) see only 1.5 s of context, and
        # a base model's GroupNorm gets the whole clip's statistics: the stitched sequence is
        # the one-pass sequence.
        np.testing.assert_allclose(chunked.features, whole.features, atol=1e-4)
    else:
        # Attention sees the whole chunk, so deep layers agree closely but not exactly.
        a, b = whole.features, chunked.features
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cos.min() > 0.99
        assert not np.array_equal(a, b)  # the chunked path really ran in pieces
    # Chunking left no hook behind: the one-pass encoder still gives what it gave.
    np.testing.assert_array_equal(one_pass.encode(clip).features, whole.features)


@pytest.mark.parametrize("chunk_s", [0.25, 0.7])
def test_chunk_plan_covers_every_frame_once(norm_dir, chunk_s):
    clip = AudioClip(_speechlike(2.3, seed=2), SR)
    whole = hubert(path=norm_dir, layer=0).encode(clip)
    chunked = hubert(path=norm_dir, layer=0, chunk_s=chunk_s, context_s=0.5).encode(clip)
    np.testing.assert_allclose(chunked.features, whole.features, atol=1e-4)


def test_very_short_and_empty_clips():
    encoder = hubert(pretrained=False, config=HubertConfig(**TINY))
    short = encoder.encode(AudioClip(_speechlike(0.01), SR))  # 160 samples < one 400-sample frame
    assert short.features.shape == (1, 32)
    empty = encoder.encode(AudioClip(np.zeros(0, np.float32), SR))
    assert empty.features.shape == (0, 32) and empty.mask.shape == (0,)


def test_stereo_is_a_user_error():
    encoder = hubert(pretrained=False, config=HubertConfig(**TINY))
    with pytest.raises(EsvaError, match="mono"):
        encoder.encode(AudioClip(np.zeros((SR, 2), np.float32), SR))


def test_missing_path_is_one_line_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(EsvaError) as info:
        create_encoder("hubert", path=missing)
    message = str(info.value)
    assert "\n" not in message
    assert str(missing) in message and "hubert" in message and "hf download" in message


def test_uncached_hub_id_is_one_line_error(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(EsvaError) as info:
        create_encoder("wavlm")  # the default hub id, not in this (empty) cache
    assert "\n" not in str(info.value)
    assert "microsoft/wavlm-base-plus" in str(info.value) and "--path" in str(info.value)


def test_cached_hub_id_loads_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants

    # The layout huggingface_hub writes: refs/main names the snapshot folder.
    repo = tmp_path / "hub" / "models--esva-test--tiny-hubert"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    _save(repo / "snapshots" / commit, seed=5)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    encoder = create_encoder("hubert", model_id="esva-test/tiny-hubert")
    assert encoder.record.version.startswith("esva-test/tiny-hubert#config-")
    assert encoder.encode(AudioClip(_speechlike(0.5), SR)).features.shape[1] == 32


def test_wrong_model_type_and_missing_weights(tmp_path):
    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(**TINY)).save_pretrained(tmp_path / "w2v")
    with pytest.raises(EsvaError, match="needs a 'hubert' checkpoint"):
        hubert(path=tmp_path / "w2v")
    (tmp_path / "bare").mkdir()
    HubertConfig(**TINY).save_pretrained(tmp_path / "bare")
    with pytest.raises(EsvaError, match="no weights file"):
        hubert(path=tmp_path / "bare")


def test_weights_hash_is_the_loaded_file_and_tracks_changes(tmp_path):
    model = _save(tmp_path, seed=0)
    first = hubert(path=tmp_path).record
    weights = tmp_path / "model.safetensors"
    assert first.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert str(tmp_path) in first.version

    with torch.no_grad():
        model.encoder.layers[0].attention.q_proj.weight.add_(0.01)
    model.save_pretrained(tmp_path)
    second = hubert(path=tmp_path).record
    assert second.weights_sha256 != first.weights_sha256
    assert second.version == first.version  # same config, other weights

    _save(tmp_path, seed=0, num_hidden_layers=1)
    assert hubert(path=tmp_path).record.version != first.version  # the config hash moved


def test_random_inits_are_told_apart():
    config = HubertConfig(**TINY)
    torch.manual_seed(1)
    a = hubert(pretrained=False, config=config).record
    torch.manual_seed(2)
    b = hubert(pretrained=False, config=config).record
    assert a.weights_sha256 != b.weights_sha256 and a.version == b.version
