"""Evaluate a trained ESVA model on a feature dataset: predictions, scores, confusion, offsets.

Writes into ``out_dir``:
``predictions.csv``  MERTools format (name,discrete[,valence]) plus the modalities each
                     prediction used (a missing one is flagged, e.g. ``audio+text``);
``offsets.csv``      per clip: τ* in seconds (paper convention), the audio lag in ms and its
                     confidence (clips where audio and video are both present);
``metrics.json``     accuracy, weighted/macro F1, UAR (+ valence MSE), per-class table;
``confusion.png``    row-normalised confusion matrix with counts.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from esva.errors import EsvaError
from esva.evaluate.classification import score_classification
from esva.evaluate.confusion import plot_confusion
from esva.io import atomic_write, write_json
from esva.model import ESVAModel
from esva.model.inputs import FeatureDataset


def evaluate_model(
    model_dir: str | Path,
    data_root: str | Path,
    out_dir: str | Path,
    split: str | None = "test",
    labels_file: str = "labels.csv",
    streams: dict[str, str] | None = None,
    batch_size: int = 64,
    title: str | None = None,
) -> dict:
    """Score ``model_dir`` on the clips of ``split`` (all clips when None) under ``data_root``."""
    from esva.recipes.train_esva import make_loader, predict_loader

    model = ESVAModel.from_pretrained(model_dir)
    cfg = model.config
    streams = streams or cfg.encoders or {m: m for m in cfg.modalities}
    dataset = FeatureDataset(Path(data_root), cfg, labels_file, streams)
    if split is not None:
        clips = [c for c in dataset.clips if c.split == split]
        if not clips:
            found = sorted({c.split for c in dataset.clips if c.split})
            raise EsvaError(
                f"no clips in split {split!r} (splits present: {found or 'none'})",
                Path(data_root) / labels_file,
            )
        dataset = dataset.subset(clips)
    pred = predict_loader(model, make_loader(dataset, batch_size))
    out = Path(out_dir)
    classes = cfg.classes
    labels = [classes[int(p.argmax())] for p in pred["prob"]]
    streams_used = pred["streams"]
    used = [
        "+".join(s for s, ok in zip(streams_used, row, strict=True) if ok)
        for row in pred["present"]
    ]
    with atomic_write(out / "predictions.csv", newline="") as handle:
        w = csv.writer(handle)
        header = ["name", "discrete"] + (["valence"] if cfg.use_valence else []) + ["modalities"]
        w.writerow(header)
        for i, name in enumerate(pred["name"]):
            row = (
                [name, labels[i]]
                + ([f"{pred['valence'][i]:.4f}"] if cfg.use_valence else [])
                + [used[i]]
            )
            w.writerow(row)
    if cfg.use_alignment and cfg.aligns:
        with atomic_write(out / "offsets.csv", newline="") as handle:
            w = csv.writer(handle)
            w.writerow(["name", "tau_s", "audio_lag_ms", "confidence"])
            for i, name in enumerate(pred["name"]):
                if "joint" in streams_used and pred["present"][i][streams_used.index("joint")]:
                    tau_s = float(pred["tau_frames"][i]) / cfg.align_fps
                    w.writerow(
                        [
                            name,
                            f"{tau_s:.5f}",
                            f"{-1000 * tau_s:.1f}",
                            f"{pred['confidence'][i]:.3f}",
                        ]
                    )
    result: dict = {"n": len(pred["name"]), "split": split}
    gold = {n: classes[y] for n, y in zip(pred["name"], pred["label"], strict=True) if y >= 0}
    if gold:
        guess = dict(zip(pred["name"], labels, strict=True))
        gold_val = pred_val = None
        if cfg.use_valence:
            val_of = {c.name: c.valence for c in dataset.clips if c.valence is not None}
            gold_val = {n: v for n, v in val_of.items() if n in gold}
            if len(gold_val) == len(gold):
                pred_val = {n: float(v) for n, v in zip(pred["name"], pred["valence"], strict=True)}
            else:
                gold_val = None
        result.update(score_classification(gold, guess, classes, gold_val, pred_val))
        names = list(gold)
        plot_confusion(
            [gold[n] for n in names],
            [guess[n] for n in names],
            classes,
            out / "confusion.png",
            title=title or f"ESVA on {Path(data_root).name} ({split or 'all'})",
        )
    result["modalities_missing"] = int(sum(1 for u in used if u.count("+") + 1 < len(streams_used)))
    result["mean_offset_confidence"] = (
        float(np.mean(pred["confidence"])) if len(pred["confidence"]) else 0.0
    )
    write_json(out / "metrics.json", result)
    return {"metrics": result, "predictions": pred}
