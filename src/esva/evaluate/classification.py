"""MER2023 discrete-emotion metrics, as MERTools computes them.

MERTools (``MER2023/main-release.py``; the same lines in MER2024/MER2025 Track 1) scores the
discrete track with ``f1_score(labels, preds, average='weighted')`` and the dimensional track with
``mean_squared_error`` on valence, and combines them as::

    overall_metric(emo_fscore, val_mse) = emo_fscore - val_mse * 0.25

i.e. the combined score uses the *weighted* F1 (the one MER2023/2024 and Emotion-LLaMA report).
Accuracy, macro F1 and UAR (balanced accuracy = mean per-class recall over the classes present in
the gold labels) are added because affective-computing papers report them too.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    mean_squared_error,
    precision_recall_fscore_support,
)

from esva.errors import EsvaError
from esva.evaluate.mer_files import check_names
from esva.labelsets import MER2023_CLASSES

# MERTools' weight of the valence MSE in the combined MER2023 score.
VALENCE_MSE_WEIGHT = 0.25


def score_classification(
    gold: Mapping[str, str],
    pred: Mapping[str, str],
    classes: Sequence[str] = MER2023_CLASSES,
    gold_valence: Mapping[str, float] | None = None,
    pred_valence: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Score discrete predictions ``{name: class}`` against gold labels (gold names only).

    Returns ``accuracy, weighted_f1, macro_f1, uar, n, per_class`` (``{class: {precision,
    recall, f1, support}}`` for every class in ``classes``), plus ``mse`` and ``combined``
    (weighted F1 - 0.25 * MSE) when both valence maps are given. Macro F1 and UAR follow
    scikit-learn's defaults (classes seen in gold or predictions, resp. in gold), so they match
    what ``f1_score(..., average='macro')`` and ``balanced_accuracy_score`` give.
    """
    names = check_names(gold, pred)
    if not names:
        raise EsvaError("no gold labels to score")
    y_true = [gold[name] for name in names]
    y_pred = [pred[name] for name in names]
    unknown = sorted(set(y_true + y_pred) - set(classes))
    if unknown:
        raise EsvaError(
            f"unknown class names {', '.join(map(repr, unknown))} (classes: {', '.join(classes)})"
        )

    # zero_division=0 is sklearn's default value, made explicit to silence its warning.
    result: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "uar": _uar(y_true, y_pred),
        "n": len(names),
    }
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(classes), zero_division=0
    )
    result["per_class"] = {
        c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for c, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
    }
    if gold_valence is not None and pred_valence is not None:
        check_names(names, gold_valence)
        check_names(names, pred_valence)
        v_true = np.array([gold_valence[name] for name in names], dtype=np.float64)
        v_pred = np.array([pred_valence[name] for name in names], dtype=np.float64)
        mse = float(mean_squared_error(v_true, v_pred))
        result["mse"] = mse
        result["combined"] = result["weighted_f1"] - mse * VALENCE_MSE_WEIGHT
    return result


def _uar(y_true: list[str], y_pred: list[str]) -> float:
    # balanced_accuracy_score warns when predictions contain classes absent from the gold
    # labels; those classes have no recall to average, which is exactly the UAR definition.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(y_true, y_pred))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top label: the |accuracy - confidence| gap averaged
    over equal-width confidence bins, each weighted by its share of the samples (Guo et al.,
    2017). ``probs`` is ``(N, C)``, ``labels`` ``(N,)`` class indices."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise EsvaError(f"ECE needs (N, C) probabilities and N labels, got {probs.shape}")
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            total += sel.mean() * abs((pred[sel] == labels[sel]).mean() - conf[sel].mean())
    return float(total)
