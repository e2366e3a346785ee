"""The pooled voice model: statistics pooling, layout, fitting, persistence, recogniser loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esva.errors import EsvaError
from esva.model.pooled_voice import (
    PooledVoiceConfig,
    PooledVoiceModel,
    interleave,
    load_model,
    model_type,
    pooled_statistics,
)
from esva.recipes.pooled_voice import (
    balanced_weights,
    fit_pooled_head,
    predict_pooled,
)

STREAMS = [("enc-a", 3, 4), ("enc-b", 2, 5)]  # (name, hidden states, dim)


def _frames(rng, t: int) -> np.ndarray:
    return rng.normal(size=(t, sum(n * d for _, n, d in STREAMS))).astype(np.float32)


def _reference_pooled(x: np.ndarray) -> np.ndarray:
    """What the benchmark caches per clip: per stream and state, [mean | std], flattened."""
    out, start = [], 0
    for _, n, d in STREAMS:
        part = x[:, start : start + n * d].reshape(len(x), n, d)
        out.append(np.concatenate([part.mean(0), part.std(0)], axis=1).reshape(-1))
        start += n * d
    return np.concatenate(out)


def test_masked_pooling_and_layout_match_the_cached_features():
    rng = np.random.default_rng(0)
    a, b = _frames(rng, 7), _frames(rng, 4)
    x = torch.zeros(2, 7, a.shape[1])
    x[0], x[1, :4] = torch.from_numpy(a), torch.from_numpy(b)
    x[1, 4:] = 1e6  # padding must not leak into the statistics
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    got = interleave(pooled_statistics(x, mask), STREAMS).numpy()
    np.testing.assert_allclose(got[0], _reference_pooled(a), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], _reference_pooled(b), rtol=1e-5, atol=1e-5)


def test_fit_learns_a_separable_problem_and_forward_matches_the_fast_path():
    rng = np.random.default_rng(1)
    clips = [_frames(rng, 20) + (k % 3) * 0.8 for k in range(60)]
    y = np.array([k % 3 for k in range(60)])
    pooled = np.stack([_reference_pooled(c) for c in clips])
    config = PooledVoiceConfig(["a", "b", "c"], STREAMS, temperature=2.0)
    model = fit_pooled_head(pooled, y, config, c=1.0)
    p_fast = predict_pooled(model, pooled)
    assert (p_fast.argmax(1) == y).mean() == 1.0
    x = torch.from_numpy(np.stack(clips))
    with torch.no_grad():
        p_model = model({"audio": x, "audio_mask": torch.ones(x.shape[:2], dtype=torch.bool)})
    np.testing.assert_allclose(p_model.probabilities.numpy(), p_fast, atol=1e-5)
    assert bool(p_model.present["audio"].all())
    # the temperature softens: the same logits at T=1 are sharper
    sharper = PooledVoiceModel(PooledVoiceConfig(["a", "b", "c"], STREAMS, temperature=1.0))
    sharper.load_state_dict(model.state_dict())
    assert predict_pooled(sharper, pooled).max(1).mean() > p_fast.max(1).mean()


def test_balanced_weights_equalise_cells():
    groups = [("x", 0)] * 6 + [("x", 1)] * 2 + [("y", 0)] * 2
    w = balanced_weights(groups)
    totals = {}
    for g, v in zip(groups, w, strict=True):
        totals[g] = totals.get(g, 0) + v
    assert np.allclose(list(totals.values()), totals[("x", 0)])
    assert np.isclose(w.mean(), 1.0)
    assert np.allclose(balanced_weights(groups, "none"), 1.0)
    by_class = balanced_weights(groups, "class")
    assert np.isclose(by_class[:6].sum() + by_class[8:].sum(), by_class[6:8].sum())
    with pytest.raises(ValueError, match="unknown balance"):
        balanced_weights(groups, "speaker")


def test_save_load_roundtrip_and_model_type(tmp_path):
    config = PooledVoiceConfig(["a", "b"], STREAMS, temperature=1.5, training={"c": 0.1})
    model = PooledVoiceModel(config)
    torch.nn.init.normal_(model.linear.weight)
    model.save_pretrained(tmp_path / "m")
    assert model_type(tmp_path / "m") == "pooled-voice"
    back = load_model(tmp_path / "m")
    assert isinstance(back, PooledVoiceModel)
    assert back.config.to_dict() == config.to_dict()
    assert back.config.encoders == {"audio": "enc-a+enc-b"}
    for k, v in model.state_dict().items():
        assert torch.equal(v, back.state_dict()[k])


def test_bad_folders_are_one_line_errors(tmp_path):
    with pytest.raises(EsvaError, match="model directory not found"):
        load_model(tmp_path / "missing")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"model_type": "pooled-voice", "classes": []}')
    with pytest.raises(EsvaError, match="bad pooled-voice config"):
        load_model(tmp_path / "m")
    good = PooledVoiceModel(PooledVoiceConfig(["a", "b"], STREAMS))
    good.save_pretrained(tmp_path / "g")
    (tmp_path / "g" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(EsvaError, match="cannot read weights"):
        load_model(tmp_path / "g")
