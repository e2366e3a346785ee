"""Batch adaptation: the adapted voice head, its fit, and ``esva predict`` on many files."""

from __future__ import annotations

import copy
import csv

import numpy as np
import pytest
import torch

from esva.apps.adapt import (
    adapt_rows,
    adaptation_inputs,
    decode_statistics,
    encode_statistics,
)
from esva.apps.batch import csv_header, write_csv
from esva.apps.fused import pool_experts
from esva.errors import EsvaError
from esva.fusion.spec import FUSION_FORMAT, FusionSpec
from esva.model.pooled_voice import PooledVoiceConfig, PooledVoiceModel, load_model
from esva.recipes.pooled_voice import (
    fit_adapted_head,
    fit_pooled_head,
    predict_adapted,
    predict_pooled,
)

STREAMS = [("enc-a", 2, 3)]  # 2 hidden states of 3 dims: 12 pooled statistics per clip
F = 12
CLASSES = ["neutral", "happy", "sad"]
ADAPT = {"min_clips": 4, "temperature": 1.0, "threshold": 0.5}


def _sources(rng, n_sources: int, per_class: int, offset_scale: float):
    """Clips of 3 classes whose emotion is a small shift along 3 features; every source adds
    its own large random offset to every feature (the recording set-up)."""
    xs, ys, src = [], [], []
    for s in range(n_sources):
        offset = rng.normal(scale=offset_scale, size=F)
        for k in range(len(CLASSES)):
            signal = np.zeros(F)
            signal[k] = 3.0
            x = rng.normal(size=(per_class, F)) + signal + offset
            xs.append(x)
            ys += [k] * per_class
            src += [s] * per_class
    return np.concatenate(xs), np.array(ys), np.array(src)


def _fitted(rng) -> PooledVoiceModel:
    x, y, src = _sources(rng, 4, 40, offset_scale=4.0)
    config = PooledVoiceConfig(CLASSES, STREAMS, adaptation=dict(ADAPT))
    model = fit_pooled_head(x, y, config, c=1.0)
    return fit_adapted_head(model, x, y, src, c=1.0)


def test_the_adapted_head_ignores_a_shared_offset_and_transfers_to_a_new_source():
    rng = np.random.default_rng(0)
    model = _fitted(rng)
    x_new, y_new, _ = _sources(rng, 1, 30, offset_scale=4.0)  # a set-up never seen
    plain = (predict_pooled(model, x_new).argmax(1) == y_new).mean()
    adapted = (predict_adapted(model, x_new).argmax(1) == y_new).mean()
    assert adapted > 0.8 and adapted > plain + 0.2, (plain, adapted)
    # the batch's own offset cancels: the same clips recorded elsewhere answer the same
    shifted = predict_adapted(model, x_new + rng.normal(scale=10.0, size=F))
    np.testing.assert_allclose(shifted, predict_adapted(model, x_new), atol=1e-4)


def test_the_adapted_head_round_trips_and_a_plain_model_has_none(tmp_path):
    rng = np.random.default_rng(1)
    model = _fitted(rng)
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.adaptable and loaded.config.adaptation == ADAPT
    x, _, _ = _sources(rng, 1, 5, 1.0)
    np.testing.assert_allclose(predict_adapted(loaded, x), predict_adapted(model, x), atol=1e-6)
    plain = PooledVoiceModel(PooledVoiceConfig(CLASSES, STREAMS))
    assert not plain.adaptable
    with pytest.raises(EsvaError, match="no batch-adapted head"):
        plain.adapted_probabilities(torch.zeros(3, F))


def test_a_bad_adaptation_config_is_one_line():
    obj = PooledVoiceConfig(CLASSES, STREAMS).to_dict()
    obj["adaptation"] = {"min_clips": "many"}
    with pytest.raises(EsvaError, match="adaptation"):
        PooledVoiceConfig.from_dict(obj)


def test_statistics_text_round_trips_and_refuses_damage():
    x = np.arange(F, dtype=np.float32)
    np.testing.assert_array_equal(decode_statistics(encode_statistics(x), F), x)
    assert decode_statistics(encode_statistics(x), F + 1) is None
    assert decode_statistics("not base64 !!", F) is None
    assert decode_statistics(encode_statistics(np.full(F, np.nan)), F) is None


class _Pred:
    """What adaptation_inputs reads of a Prediction."""

    def __init__(self, stats, per_modality, confident=True, flags=()):
        self.voice_statistics = stats
        self.per_modality = per_modality
        self.confident = confident
        self.flags = list(flags)


def _rows(model, x, fused: bool) -> dict[str, dict]:
    rows = {}
    for i, stats in enumerate(x):
        p = predict_pooled(model, stats[None])[0]
        per_modality = {
            "voice": {"probabilities": dict(zip(CLASSES, p, strict=True)), "presence": 1.0}
        }
        if fused:
            per_modality["face"] = {
                "probabilities": {"neutral": 0.6, "happy": 0.3, "sad": 0.1},
                "presence": 0.5,
            }
        rows[f"clip{i}"] = {
            "discrete": CLASSES[int(p.argmax())],
            "probabilities": list(p),
            "error": "",
            "confident": True,
            "experts": {},
            "adapted": False,
            **adaptation_inputs(_Pred(stats, per_modality)),
        }
    return rows


def test_rows_are_adapted_only_from_enough_clips_and_errors_stay():
    rng = np.random.default_rng(2)
    model = _fitted(rng)
    x, _y, _ = _sources(rng, 1, 2, 4.0)  # 6 clips
    rows = _rows(model, x[:3], fused=False)
    before = copy.deepcopy(rows)
    result = adapt_rows(rows, model)
    assert result.clips == 0 and "fewer than the 4" in result.skipped
    assert rows == before
    rows = _rows(model, x, fused=False)
    rows["broken"] = {"discrete": "", "probabilities": None, "error": "broken.wav: not media"}
    result = adapt_rows(rows, model)
    assert result.clips == 6 and rows["broken"]["error"] and "adapted" not in rows["broken"]
    want = predict_adapted(model, x)
    for i in range(6):
        row = rows[f"clip{i}"]
        assert row["adapted"] is True and row["discrete"] == CLASSES[int(want[i].argmax())]
        np.testing.assert_allclose(row["probabilities"], want[i], atol=1e-6)
        assert row["confident"] == (want[i].max() >= ADAPT["threshold"])


def test_a_fused_row_is_fused_again_by_the_clip_rule():
    rng = np.random.default_rng(3)
    model = _fitted(rng)
    x, _, _ = _sources(rng, 1, 2, 4.0)
    spec = FusionSpec.from_dict(
        {
            "format": FUSION_FORMAT,
            "classes": CLASSES,
            "experts": {
                "voice": {"base_weight": 0.9, "temperature": 1.0},
                "face": {"base_weight": 0.1, "temperature": 1.0, "encoder": "fer-cnn"},
            },
            "confidence_power": 1.0,
            "speech_full": 0.4,
        }
    )
    rows = _rows(model, x, fused=True)
    assert adapt_rows(rows, model, spec).clips == len(x)
    voice = predict_adapted(model, x)
    face = np.array([0.6, 0.3, 0.1])
    for i in range(len(x)):
        want, _, _ = pool_experts(spec, {"voice": voice[i], "face": face},
                                  {"voice": 1.0, "face": 0.5})  # fmt: skip
        np.testing.assert_allclose(rows[f"clip{i}"]["probabilities"], want, atol=1e-6)
        assert rows[f"clip{i}"]["experts"]["voice"] == CLASSES[int(voice[i].argmax())]


def test_a_damaged_row_is_left_alone_and_not_counted():
    """A row read back from a side file written by another version: wrong shapes, a missing
    expert, NaN; it keeps its own answer and the batch counts without it."""
    rng = np.random.default_rng(4)
    model = _fitted(rng)
    x, _, _ = _sources(rng, 1, 3, 4.0)  # 9 clips
    spec = FusionSpec.from_dict(
        {"format": FUSION_FORMAT, "classes": CLASSES, "experts": {"voice": {"base_weight": 1.0}}}
    )
    rows = _rows(model, x, fused=False)
    rows["clip0"]["experts_in"]["voice"]["probabilities"] = [0.5, 0.5]
    rows["clip1"]["experts_in"] = {"face": {"probabilities": [1, 0, 0], "presence": 1.0}}
    rows["clip2"]["experts_in"]["voice"]["presence"] = float("nan")
    before = {k: copy.deepcopy(rows[k]) for k in ("clip0", "clip1", "clip2")}
    result = adapt_rows(rows, model, spec)
    assert result.clips == 6  # clips 3-8
    for key, row in before.items():
        assert rows[key] == row


def test_a_model_without_the_head_is_not_adapted():
    plain = PooledVoiceModel(PooledVoiceConfig(CLASSES, STREAMS))
    rows = {"a": {"error": "", "voice_statistics": encode_statistics(np.zeros(F))}}
    assert adapt_rows(rows, plain).skipped == "the voice model has no batch-adapted head"


def test_the_csv_says_which_rows_were_adapted(tmp_path):
    rows = {
        str(tmp_path / "a.wav"): {
            "discrete": "happy",
            "probabilities": [0.2, 0.7, 0.1],
            "modalities": "audio",
            "offset_ms": None,
            "confident": True,
            "error": "",
            "adapted": True,
        },
        str(tmp_path / "b.wav"): {
            "discrete": "",
            "probabilities": None,
            "modalities": "",
            "offset_ms": None,
            "error": "bad",
        },
    }
    out = tmp_path / "p.csv"
    write_csv(out, [tmp_path / "a.wav", tmp_path / "b.wav"], rows, CLASSES)
    with open(out, newline="") as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == csv_header(CLASSES) and csv_header(CLASSES)[-1] == "adapted"
    assert got[0]["adapted"] == "yes" and got[1]["adapted"] == ""
