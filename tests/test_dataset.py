"""The feature store, the dataset and its validation of user files."""

from __future__ import annotations

import numpy as np
import pytest

from esva.data.clip_table import read_clip_table
from esva.data.streams import (
    EncoderRecord,
    StreamFeatures,
    clip_path,
    read_stream,
    to_rate,
    write_stream,
)
from esva.data.synthetic import SyntheticConfig, generate_corpus, read_offsets
from esva.errors import EsvaError
from esva.model.config import ESVAConfig
from esva.model.inputs import FeatureDataset, collate


def _cfg(**kw):
    return ESVAConfig(audio_dim=4, visual_dim=3, **kw)


def _store(root, rows="name,discrete\nc1,happy\nc2,sad\n", audio_dim=4):
    (root / "labels.csv").write_text(rows)
    rng = np.random.default_rng(0)
    for name in ("c1", "c2"):
        write_stream(
            clip_path(root, "audio", name),
            StreamFeatures(rng.standard_normal((20, audio_dim)), 50.0),
        )
    write_stream(
        clip_path(root, "visual", "c1"),
        StreamFeatures(rng.standard_normal((10, 3)), 25.0, start_s=0.2),
    )
    return root


def test_stream_round_trip(tmp_path):
    x = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32)
    mask = np.array([1, 1, 0, 1, 1, 1, 0], bool)
    write_stream(tmp_path / "a.safetensors", StreamFeatures(x, 25.0, 0.5, mask, {"name": "enc"}))
    s = read_stream(tmp_path / "a.safetensors")
    np.testing.assert_array_equal(s.features, x)
    np.testing.assert_array_equal(s.mask, mask)
    assert (s.fps, s.start_s, s.record) == (25.0, 0.5, {"name": "enc"})
    assert not list(tmp_path.glob("*.tmp")), "no temporary file left behind"


def test_an_encoders_record_is_stored_as_its_dict(tmp_path):
    """A stream as an encoder returns it (its EncoderRecord) is written as the record's dict,
    the same file as a stream whose record is that dict."""
    x = np.ones((3, 2), np.float32)
    record = EncoderRecord("enc", "1.0", "ab" * 32, "stack")
    write_stream(tmp_path / "a.safetensors", StreamFeatures(x, 50.0, 0.1, None, record))
    write_stream(tmp_path / "b.safetensors", StreamFeatures(x, 50.0, 0.1, None, record.to_dict()))
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    assert read_stream(tmp_path / "a.safetensors").record == record.to_dict()
    assert StreamFeatures(x, 50.0).record_dict() == {}


@pytest.mark.parametrize(
    ("features", "mask", "message"),
    [
        (np.zeros((2, 3, 4)), None, r"features must be \(T, D\), got shape \(2, 3, 4\)"),
        (np.zeros((4, 3)), np.ones(3, bool), r"mask shape \(3,\) != \(4,\)"),
        (np.zeros((4, 3)), np.ones((4, 1), bool), r"mask shape \(4, 1\) != \(4,\)"),
    ],
)
def test_a_stream_must_be_a_sequence_with_its_mask(features, mask, message):
    with pytest.raises(ValueError, match=message):
        StreamFeatures(features, 25.0, 0.0, mask)


def test_dataset_items_and_missing_visual(tmp_path):
    ds = FeatureDataset(_store(tmp_path), _cfg())
    item = ds[0]
    # The visual stream starts 0.2 s late: 5 masked frames at 25 fps in front.
    assert not item["visual_mask"][:5].any() and item["visual_mask"][5:].all()
    assert "visual" not in ds[1]
    batch = collate([ds[0], ds[1]], ["audio", "visual"])
    assert batch["audio"].shape == (2, 20, 4) and batch["visual"].shape == (2, 15, 3)
    assert not batch["visual_mask"][1].any()
    assert batch["label"].tolist() == [2, 3]


def test_to_rate_resamples_on_the_container_clock():
    s = StreamFeatures(np.arange(10, dtype=np.float32)[:, None], fps=10.0, start_s=0.1)
    x, m = to_rate(s, 20.0)
    assert not m[:2].any() and m[2]
    assert x[2, 0] == 0.0 and x[3, 0] == pytest.approx(0.5)


def test_nan_features_name_the_file(tmp_path):
    _store(tmp_path)
    bad = np.ones((5, 4), np.float32)
    bad[2, 1] = np.nan
    write_stream(clip_path(tmp_path, "audio", "c2"), StreamFeatures(bad, 50.0))
    ds = FeatureDataset(tmp_path, _cfg())
    with pytest.raises(EsvaError, match=r"c2\.safetensors: features contain NaN"):
        ds[1]


def test_dimension_mismatch_is_reported(tmp_path):
    _store(tmp_path, audio_dim=7)
    with pytest.raises(
        EsvaError, match=r"audio features have shape \(20, 7\).*expects dimension 4"
    ):
        FeatureDataset(tmp_path, _cfg())


@pytest.mark.parametrize(
    "rows,message",
    [
        ("name,label\nc1,happy\n", "expected columns name,discrete"),
        ("name,discrete\nc1,joyful\n", "unknown class names \\['joyful'\\]"),
        ("name,discrete\n", "no rows"),
        ("name,discrete,valence\nc1,happy,high\n", "valence 'high' is not a number"),
        ("name,discrete\nc1,happy\nc1,sad\n", "duplicate name"),
    ],
)
def test_bad_label_tables(tmp_path, rows, message):
    (tmp_path / "labels.csv").write_text(rows)
    with pytest.raises(EsvaError, match=message):
        read_clip_table(tmp_path / "labels.csv", list(_cfg().classes))


def test_clip_without_any_features_is_an_error(tmp_path):
    _store(tmp_path, rows="name,discrete\nc1,happy\nc3,sad\n")
    ds = FeatureDataset(tmp_path, _cfg())
    with pytest.raises(EsvaError, match="'c3' has no usable feature file"):
        ds[1]


def test_synthetic_corpus_is_seeded_and_has_known_offsets(tmp_path):
    cfg = SyntheticConfig(clips_per_class=3, n_speakers=6, seed=3)
    a = generate_corpus(tmp_path / "a", cfg)
    b = generate_corpus(tmp_path / "b", cfg)
    assert (a / "labels.csv").read_text() == (b / "labels.csv").read_text()
    np.testing.assert_array_equal(
        read_stream(a / "audio" / "syn_00004.safetensors").features,
        read_stream(b / "audio" / "syn_00004.safetensors").features,
    )
    offsets = read_offsets(a)
    assert len(offsets) == 18 and all(abs(t) <= cfg.max_offset_s for t in offsets.values())
    clips = read_clip_table(a / "labels.csv")
    assert {c.split for c in clips} == {"train", "val", "test"}
    # Speaker-independent: no speaker in two splits.
    by_speaker = {}
    for c in clips:
        by_speaker.setdefault(c.speaker, set()).add(c.split)
    assert all(len(s) == 1 for s in by_speaker.values())
