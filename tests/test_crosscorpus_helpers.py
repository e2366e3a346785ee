"""benchmarks/crosscorpus.py's protocol pieces: speaker splits, LOCO folds, ECE, temperature."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import crosscorpus as cc


@dataclass
class Clip:
    name: str
    speaker: str
    extra: dict = field(default_factory=dict)


def _clips() -> list[Clip]:
    out = []
    for corpus, n_speakers in (("ravdess", 20), ("tess", 2), ("emovo", 6), ("ased", 10)):
        for s in range(n_speakers):
            for i in range(3):
                out.append(Clip(f"{corpus}_{s}_{i}", f"{corpus}:{s}", {"corpus": corpus}))
    return out


def test_validation_speakers_take_a_fifth_of_each_corpus_and_never_whole_corpora():
    clips = _clips()
    val = cc.validation_speakers(clips)
    per = {c: sum(v.startswith(f"{c}:") for v in val) for c in cc.CORPORA}
    assert per == {"ravdess": 4, "tess": 1, "emovo": 1, "ased": 2}
    assert cc.validation_speakers(clips) == val  # fixed seed


def test_loco_split_holds_out_one_corpus_and_keeps_speakers_apart():
    clips = _clips()
    val = cc.validation_speakers(clips)
    s = cc.loco_split(clips, "emovo", val)
    assert {clips[i].extra["corpus"] for i in s["test"]} == {"emovo"}
    assert "emovo" not in {clips[i].extra["corpus"] for i in s["train"] + s["val"]}
    train_spk = {clips[i].speaker for i in s["train"]}
    val_spk = {clips[i].speaker for i in s["val"]}
    assert train_spk and val_spk and not train_spk & val_spk
    assert len(s["train"]) + len(s["val"]) + len(s["test"]) == len(clips)


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident():
    labels = np.array([0, 0, 1, 1])
    right = np.array([[0.75, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.25]])  # 3/4 right
    assert cc.ece(right, labels) == pytest.approx(0.0)
    sure = np.array([[0.99, 0.01]] * 4)  # always class 0 at 0.99: half right
    assert cc.ece(sure, labels) == pytest.approx(0.49)


def test_temperature_softens_overconfident_probabilities():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    logits = rng.normal(size=(400, 3))
    logits[np.arange(400), labels] += 1.0
    probs = cc.with_temperature(np.exp(logits * 4) / np.exp(logits * 4).sum(1, keepdims=True), 1)
    t = cc.fit_temperature(probs, labels)
    assert t > 2.0  # the scores were sharpened 4x
    after = cc.with_temperature(probs, t)
    assert np.allclose(after.sum(1), 1.0)
    assert cc.ece(after, labels) < cc.ece(probs, labels)
