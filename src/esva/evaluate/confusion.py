"""Confusion-matrix PNG and per-class table for the discrete scorers.

The PNG follows the paper's Figures 4-5 and MERTools' ``func_plot_confusion_matrix``: rows are
the true classes, each row normalised to sum to 1 (so the diagonal is per-class recall), drawn
with the ``Blues`` colour map; every cell also shows its raw count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix

from esva.errors import EsvaError
from esva.io import atomic_path


def confusion_counts(
    y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]
) -> np.ndarray:
    """``(C, C)`` int matrix, rows = true class, columns = predicted class, in ``classes`` order."""
    return confusion_matrix(list(y_true), list(y_pred), labels=list(classes))


def row_normalise(counts: np.ndarray) -> np.ndarray:
    """Divide each row by its sum; a class with no gold samples stays a row of zeros (not NaN)."""
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0)


def plot_confusion(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    classes: Sequence[str],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Write the row-normalised confusion matrix (with counts) as a PNG, atomically."""
    # The object-oriented API (no pyplot) needs no GUI backend and keeps no global figure state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = confusion_counts(y_true, y_pred, classes)
    rates = row_normalise(counts)
    n = len(classes)
    size = 1.0 + 0.75 * n
    fig = Figure(figsize=(size + 1.2, size), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(rates, interpolation="nearest", cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(n)
    ax.set_xticks(ticks, labels=list(classes), rotation=30, ha="right")
    ax.set_yticks(ticks, labels=list(classes))
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    if title:
        ax.set_title(title)
    for i in range(n):
        for j in range(n):
            # White text on dark cells, as in MERTools' plot, so every number stays readable.
            colour = "white" if rates[i, j] > 0.5 else "black"
            ax.text(
                j,
                i,
                f"{rates[i, j]:.2f}\n({counts[i, j]})",
                ha="center",
                va="center",
                fontsize=8,
                color=colour,
            )
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")  # the temp name ends in .tmp: say the format explicitly
    except OSError as exc:
        raise EsvaError(
            f"cannot write the confusion matrix ({exc.strerror or exc})", path
        ) from None
    return path


def per_class_table(per_class: Mapping[str, Mapping[str, Any]], title: str | None = None) -> Any:
    """A :class:`rich.table.Table` of precision / recall / F1 / support per class."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("class")
    for column in ("precision", "recall", "f1", "support"):
        table.add_column(column, justify="right")
    for name, row in per_class.items():
        table.add_row(
            name,
            f"{row['precision']:.4f}",
            f"{row['recall']:.4f}",
            f"{row['f1']:.4f}",
            str(row["support"]),
        )
    return table
