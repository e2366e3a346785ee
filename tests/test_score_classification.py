"""MER2023 discrete metrics: a hand-computed example, agreement with sklearn, the confusion PNG."""

from __future__ import annotations

import random

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from esva.errors import EsvaError
from esva.evaluate.classification import score_classification
from esva.evaluate.confusion import confusion_counts, per_class_table, plot_confusion, row_normalise
from esva.evaluate.mer_files import parse_classes
from esva.labelsets import MER2023_CLASSES, RAVDESS_CLASSES

# 7 samples; "x" is a prediction-only name that must be ignored.
GOLD = ["neutral", "neutral", "neutral", "angry", "happy", "happy", "sad"]
PRED = ["neutral", "neutral", "angry", "angry", "happy", "sad", "sad"]
NAMES = [f"s{i}" for i in range(7)]


def _maps():
    gold = dict(zip(NAMES, GOLD, strict=True))
    pred = dict(zip(NAMES, PRED, strict=True)) | {"x": "worried"}
    return gold, pred


def test_hand_computed_example():
    gold, pred = _maps()
    r = score_classification(gold, pred, MER2023_CLASSES)
    # Per class (TP, FP, FN): neutral (2,0,1) P=1 R=2/3 F=0.8; angry (1,1,0) P=.5 R=1 F=2/3;
    # happy (1,0,1) P=1 R=.5 F=2/3; sad (1,1,0) P=.5 R=1 F=2/3. Supports 3, 1, 2, 1.
    assert r["n"] == 7
    assert r["accuracy"] == pytest.approx(5 / 7)
    assert r["weighted_f1"] == pytest.approx((3 * 0.8 + (1 + 2 + 1) * 2 / 3) / 7)
    assert r["macro_f1"] == pytest.approx((0.8 + 3 * 2 / 3) / 4)  # over the 4 classes seen
    assert r["uar"] == pytest.approx((2 / 3 + 1 + 0.5 + 1) / 4)
    assert r["per_class"]["neutral"] == pytest.approx(
        {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    )
    assert r["per_class"]["worried"]["support"] == 0
    assert list(r["per_class"]) == list(MER2023_CLASSES)
    assert "mse" not in r and "combined" not in r


def test_valence_mse_and_combined_score():
    gold, pred = _maps()
    gold_v = dict.fromkeys(NAMES, 0.0)
    pred_v = dict.fromkeys(NAMES, 0.0) | {"s0": 1.0, "s6": -2.0, "x": 9.0}
    r = score_classification(gold, pred, MER2023_CLASSES, gold_v, pred_v)
    assert r["mse"] == pytest.approx((1 + 4) / 7)
    # MERTools overall_metric: weighted F1 - 0.25 * MSE
    assert r["combined"] == pytest.approx(r["weighted_f1"] - 0.25 * 5 / 7)


def test_matches_sklearn_on_random_ravdess_labels():
    rng = random.Random(0)
    names = [f"clip{i}" for i in range(200)]
    gold = {n: rng.choice(RAVDESS_CLASSES) for n in names}
    pred = {n: (gold[n] if rng.random() < 0.5 else rng.choice(RAVDESS_CLASSES)) for n in names}
    r = score_classification(gold, pred, RAVDESS_CLASSES)
    y_true, y_pred = [gold[n] for n in names], [pred[n] for n in names]
    assert r["weighted_f1"] == pytest.approx(f1_score(y_true, y_pred, average="weighted"))
    assert r["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert r["uar"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert sum(row["support"] for row in r["per_class"].values()) == 200


def test_missing_prediction_and_unknown_class_are_user_errors():
    gold, pred = _maps()
    del pred["s3"]
    with pytest.raises(EsvaError, match="s3"):
        score_classification(gold, pred)
    gold, pred = _maps()
    pred["s1"] = "bored"
    with pytest.raises(EsvaError, match="bored"):
        score_classification(gold, pred)


def test_parse_classes_presets_and_lists():
    assert parse_classes(None) == MER2023_CLASSES
    assert parse_classes("ravdess") == RAVDESS_CLASSES
    assert parse_classes(" Happy, sad ") == ("happy", "sad")
    with pytest.raises(EsvaError):
        parse_classes("happy,happy")


def test_confusion_counts_and_row_normalisation():
    counts = confusion_counts(GOLD, PRED, MER2023_CLASSES)
    assert counts.sum() == 7 and counts[0, 0] == 2 and counts[0, 1] == 1
    rates = row_normalise(counts)
    assert rates[0] == pytest.approx([2 / 3, 1 / 3, 0, 0, 0, 0])
    assert not np.isnan(rates).any() and rates[4].sum() == 0  # "worried" has no gold sample


def test_plot_confusion_writes_png_atomically(tmp_path):
    out = plot_confusion(GOLD, PRED, MER2023_CLASSES, tmp_path / "sub" / "cm.png", title="test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["cm.png"]  # no temp file left behind


def test_per_class_table_lists_every_class():
    from rich.console import Console

    gold, pred = _maps()
    console = Console(record=True, width=100)
    console.print(per_class_table(score_classification(gold, pred)["per_class"]))
    text = console.export_text()
    assert all(c in text for c in MER2023_CLASSES) and "0.8000" in text


def test_expected_calibration_error() -> None:
    import numpy as np

    from esva.evaluate.classification import expected_calibration_error

    # Four samples at confidence 0.75, three right: calibrated, ECE 0.
    probs = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    # Confident (0.9) and half right: gap 0.4 in the one occupied bin.
    probs = np.array([[0.9, 0.1]] * 4)
    assert expected_calibration_error(probs, np.array([0, 1, 0, 1])) == pytest.approx(0.4)
    with pytest.raises(EsvaError):
        expected_calibration_error(np.ones(3), np.zeros(3))
