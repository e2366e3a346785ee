"""benchmarks/fusion_dev.py's cross-corpus dev pairs: a face and voices of the same emotion."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _generalise_features as gf
import fusion_dev as fd
from esva.data.label_mapping import SER7


@pytest.fixture
def fake_corpora(tmp_path, monkeypatch):
    """Two corpora of out-of-corpus voice predictions (probabilities in SER7 order)."""
    rng = np.random.default_rng(0)
    labels = {"a": ["happy"] * 30 + ["sad"] * 5, "b": ["happy"] * 3 + ["angry"] * 10}
    for corpus, names in labels.items():
        np.save(tmp_path / f"nested_{corpus}.npy", rng.dirichlet(np.ones(len(SER7)), len(names)))
    monkeypatch.setattr(gf, "WORK", tmp_path)
    monkeypatch.setattr(gf, "CORPORA", {k: k for k in labels})
    monkeypatch.setattr(
        gf, "load_corpus", lambda c: [SimpleNamespace(label=lab) for lab in labels[c]]
    )
    return labels


def _face(label: str) -> dict:
    return {"per_modality": {"face": {"probabilities": {label: 1.0}, "presence": 0.9}}}


def test_pairs_join_a_face_with_voices_of_its_own_emotion(fake_corpora):
    mead = [(_face("happy"), "happy"), (_face("sad"), "sad"), (_face("neutral"), None)]
    entries, labels = fd.cross_corpus_pairs(mead, per_clip=4, seed=0)
    # happy: 4 from a, 3 (all there are) from b; sad: 4 from a, none in b; contempt-like None
    # clips are skipped.
    assert labels == ["happy"] * 7 + ["sad"] * 4
    for entry, label in zip(entries, labels, strict=True):
        voice = entry["per_modality"]["voice"]
        assert list(voice["probabilities"]) == list(SER7)
        assert sum(voice["probabilities"].values()) == pytest.approx(1.0)
        assert voice["presence"] == 1.0
        assert entry["per_modality"]["face"]["probabilities"] == {label: 1.0}
    again, _ = fd.cross_corpus_pairs(mead, per_clip=4, seed=0)
    assert again == entries  # seeded draw


def test_pairs_need_the_nested_predictions(fake_corpora, tmp_path):
    (tmp_path / "nested_b.npy").unlink()
    with pytest.raises(SystemExit, match=r"nested_b\.npy: missing"):
        fd.cross_corpus_pairs([(_face("happy"), "happy")])


def test_confidence_check_ranks_by_the_top_probability_and_applies_the_threshold():
    spec = fd.spec_with(0.0, 0.0, 0.4, "voice")
    threshold = fd.confidence_threshold()
    assert threshold is not None and 0.0 < threshold < 0.9

    def voice(top: float, label: str) -> dict:
        rest = (1.0 - top) / (len(SER7) - 1)
        probs = {c: (top if c == label else rest) for c in SER7}
        return {"per_modality": {"voice": {"probabilities": probs, "presence": 1.0}}}

    # Four sure and right, four unsure and wrong (their top class is not the truth).
    entries = [voice(0.95, "happy")] * 4 + [voice(threshold / 2 + 0.1, "sad")] * 4
    labels = ["happy"] * 4 + ["angry"] * 4
    c = fd.confidence_check(spec, entries, labels, "voice")
    assert c["all"] == pytest.approx(0.5)
    assert c["top50"] == pytest.approx(1.0)
    assert c["confident_share"] == pytest.approx(0.5)
    assert c["confident_accuracy"] == pytest.approx(1.0)
