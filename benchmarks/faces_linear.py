"""Benchmark: the shipped face ensemble against a linear baseline, on a dataset neither trained on.

    python benchmarks/faces_linear.py     # needs ../shared/data -> results/faces_linear.md

The baseline is the face analogue of the voice's pooled-feature logistic regression: the
embeddings both face CNNs already compute (the FER+ expert's 256-d and fer-cnn's, side by side:
exactly what ``face-ensemble`` gives as features), standardised, with a logistic regression
trained on FER+ train (majority labels), C chosen on FER+ valid. Both are then scored on CK+48
(posed faces of another lab, never trained on), 7 classes without contempt (fer-cnn has none),
in this one run. One CPU thread.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import faces as fb
from _common import ROOT, markdown_table, require_shared
from esva.data.ferplus import load_kept
from esva.encoders import create_encoder

C_GRID = (0.01, 0.1, 1.0)


def prepare(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kept images, soft targets and majority labels of a FER+ split (esva.data.ferplus)."""
    kept = load_kept(require_shared() / "face_images" / "ferplus", split, fb.FERPLUS_CACHE)
    return kept.images, kept.targets, kept.labels


def embed_and_pool(enc, images: np.ndarray, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, pooled logits) of grey 48 px faces through the shipped ensemble."""
    embs, logits = [], []
    for s in range(0, len(images), batch):
        e, z = enc.forward_faces(images[s : s + batch, :, :, None])
        embs.append(e)
        logits.append(z)
    return np.concatenate(embs), np.concatenate(logits)


def main() -> None:
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    shared = require_shared()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    enc = create_encoder("face-ensemble")
    tr_x, _, tr_y = prepare("train")
    va_x, _, va_y = prepare("valid")
    ck_x, ck_y = fb.load_ck(shared)
    keep = ck_y != fb.fe.CLASSES.index("contempt")
    ck_x, ck_y = ck_x[keep], ck_y[keep]
    tr_e, _ = embed_and_pool(enc, tr_x)
    va_e, _ = embed_and_pool(enc, va_x)
    ck_e, ck_z = embed_and_pool(enc, ck_x)
    no_contempt = [i for i, c in enumerate(fb.fe.CLASSES) if c != "contempt"]
    shipped = np.asarray(no_contempt)[ck_z[:, no_contempt].argmax(1)]
    rows, best = [], None
    for c in C_GRID:
        lr = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
        lr.fit(tr_e, tr_y)
        val = float((lr.predict(va_e) == va_y).mean())
        rows.append([f"C = {c}", f"{val:.3f}"])
        if best is None or val > best[0]:
            best = (val, c, lr)
    val, c, lr = best
    proba = np.zeros((len(ck_e), len(fb.fe.CLASSES)))
    proba[:, lr.classes_] = lr.predict_proba(ck_e)
    baseline = np.asarray(no_contempt)[proba[:, no_contempt].argmax(1)]
    acc = {
        "shipped face-ensemble (no training on CK+)": float((shipped == ck_y).mean()),
        f"logistic regression on the ensemble's embeddings (FER+ train, C = {c})": float(
            (baseline == ck_y).mean()
        ),
    }
    elapsed = time.perf_counter() - t0
    text = f"""# Face ensemble vs a linear baseline on CK+48 (never trained on)

Produced by `python benchmarks/faces_linear.py` ({elapsed:.0f} s, one CPU thread). CK+48
without contempt: {len(ck_y)} images, 7 classes. FER+ train {len(tr_y)} / valid {len(va_y)}
faces (majority label in the 8 emotions).

{markdown_table(["model", "CK+48 accuracy"], [[k, f"{v:.3f}"] for k, v in acc.items()])}

The baseline's C, chosen on FER+ valid accuracy:

{markdown_table(["C", "FER+ valid accuracy"], rows)}
"""
    out = ROOT / "results" / "faces_linear.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
