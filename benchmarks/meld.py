"""Benchmark: MELD text — ``minilm`` sentence embeddings + a head, on MELD's official test split.

    python benchmarks/meld.py              # needs ../shared/data/meld; writes results/meld.md
    python benchmarks/meld.py --dry-run    # generated mini-MELD CSVs (needs the minilm weights)

MELD (Poria et al. 2019) utterances from *Friends*, 7 classes (neutral, joy, surprise, anger,
sadness, disgust, fear), official splits: train 9989 / dev 1109 / test 2610. Only the text is
here (no media), so this measures the text stream alone, one utterance at a time (no dialogue
context). Two heads on the same ``esva extract`` features (all-MiniLM-L6-v2, 384-d):

* the ESVA model with the text modality only (projection + pooling + fusion classifier),
  trained with esva's recipe, early stopping on dev, 3 seeds;
* a standardised logistic regression, C chosen on dev.

Weighted F1 on the test split is MELD's usual metric; macro F1, UAR and accuracy are given too
because the classes are very imbalanced (neutral is 48 % of test).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ravdess import RESULTS, ROOT, SHARED, Job, _rel, pm, run_jobs

CLASSES = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
MODEL: dict = {"hidden_dim": 128}
TRAIN: dict = {"epochs": 20, "patience": 5, "batch_size": 64, "lr": 1e-3}
SEEDS = (0, 1, 2)
C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def extract_text(clips: list, store: Path, workers: int) -> Path:
    from esva.extract.pipeline import ExtractConfig
    from esva.extract.run import run_extract

    t0 = time.perf_counter()
    config = ExtractConfig(audio=[], visual=[], text=["minilm"], asr=False)
    summary = run_extract(clips, store, config, workers=workers, progress=False)
    if summary.failed:
        raise SystemExit(f"extraction failed for {len(summary.failed)} clips: {summary.failed[:3]}")
    if summary.done:
        print(f"[meld] minilm: {summary.done} utterances in {time.perf_counter() - t0:.0f} s")
    return store


def text_job(store: Path, seed: int, runs: Path) -> Job:
    """An ESVA text-only run (the Job of the RAVDESS benchmark, with the text stream)."""
    return Job(
        "esva-text__minilm",
        str(store),
        "minilm",
        (),
        0,
        seed,
        str(runs / f"seed{seed}"),
        CLASSES,
        model=dict(MODEL),
        train=dict(TRAIN),
        modality="text",
        labels="labels.csv",
    )


def embeddings(store: Path, names: list[str]) -> np.ndarray:
    from esva.data.streams import clip_path, read_stream

    return np.stack([read_stream(clip_path(store, "minilm", n)).features[0] for n in names])


def logreg(store: Path, clips: list) -> dict:
    """Standardised logistic regression on the embeddings; C by dev weighted F1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from esva.evaluate.classification import score_classification

    parts = {s: [c for c in clips if c.split == s] for s in ("train", "val", "test")}
    x = {s: embeddings(store, [c.name for c in v]) for s, v in parts.items()}
    y = {s: [c.label for c in v] for s, v in parts.items()}

    def fit(c: float):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)).fit(
            x["train"], y["train"]
        )

    val = {c: f1_score(y["val"], fit(c).predict(x["val"]), average="weighted") for c in C_GRID}
    best = max(val, key=val.get)
    pred = fit(best).predict(x["test"]).tolist()
    names = [c.name for c in parts["test"]]
    scores = score_classification(
        dict(zip(names, y["test"], strict=True)), dict(zip(names, pred, strict=True)), CLASSES
    )
    return {
        "C": best,
        "val_weighted_f1": val[best],
        "test": scores,
        "predictions": dict(zip(names, pred, strict=True)),
    }


def write_report(
    out: Path, clips: list, esva: list[dict], lin: dict, command: str, name: str = "meld"
) -> Path:
    from esva.evaluate.confusion import plot_confusion
    from esva.io import atomic_write, write_json

    test = [c for c in clips if c.split == "test"]
    gold = {c.name: c.label for c in test}

    def stats(results: list[dict], metric: str) -> tuple[float, float]:
        v = np.array([r["test"][metric] for r in results])
        return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0

    counts = {k: sum(1 for c in test if c.label == k) for k in CLASSES}
    lines = [
        "# MELD text: minilm sentence embeddings + head (official test split)",
        "",
        f"{len(clips)} utterances: train {sum(c.split == 'train' for c in clips)}, dev "
        f"{sum(c.split == 'val' for c in clips)}, test {len(test)}; 7 classes; test class "
        "counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ". Text only, one "
        "utterance at a time (no dialogue context, no audio/video: the media are not here).",
        f"Majority-class (neutral) weighted F1 on test: {_majority_f1(gold):.3f}.",
        "",
        "| model | weighted F1 | macro F1 | UAR | accuracy | runs | note |",
        "|---|---|---|---|---|---|---|",
        f"| minilm + logistic regression | {lin['test']['weighted_f1']:.3f} | "
        f"{lin['test']['macro_f1']:.3f} | {lin['test']['uar']:.3f} | "
        f"{lin['test']['accuracy']:.3f} | 1 | C={lin['C']} chosen on dev "
        f"(dev weighted F1 {lin['val_weighted_f1']:.3f}) |",
        "| minilm + ESVA model (text stream only) | "
        + " | ".join(pm(stats(esva, m)) for m in ("weighted_f1", "macro_f1", "uar", "accuracy"))
        + f" | {len(esva)} | mean ± std over seeds; early stopping on dev (dev weighted F1 "
        f"{np.mean([r['val_weighted_f1'] for r in esva]):.3f}) |",
        "",
        "ESVA recipe: " + ", ".join(f"{k}={v}" for k, v in {**MODEL, **TRAIN}.items()) + ".",
        "",
        "Confusion matrices (rows = true class):",
        "",
    ]
    for label, pred in (("logreg", lin["predictions"]), ("esva", esva[0]["predictions"])):
        names = list(gold)
        png = plot_confusion(
            [gold[n] for n in names],
            [pred[n] for n in names],
            CLASSES,
            out / f"{name}_confusion_{label}.png",
            f"MELD test, minilm + {label}",
        )
        lines.append(f"- {label}: `{_rel(png)}`")
    lines += ["", f"Command: `{command}`", ""]
    with atomic_write(out / f"{name}.md") as handle:
        handle.write("\n".join(lines))
    write_json(
        out / f"{name}.json",
        {
            "logreg": {k: v for k, v in lin.items() if k != "predictions"},
            "esva": [
                {k: v for k, v in r.items() if k not in ("predictions", "curve")} for r in esva
            ],
        },
    )
    print("\n".join(lines))
    return out / f"{name}.md"


def _majority_f1(gold: dict[str, str]) -> float:
    from sklearn.metrics import f1_score

    y = list(gold.values())
    return float(f1_score(y, ["neutral"] * len(y), average="weighted", zero_division=0))


def make_mini_meld(root: Path) -> Path:
    """Three tiny MELD CSVs with the official columns and a word per emotion."""
    cues = {
        "neutral": "okay then",
        "joy": "wonderful great",
        "surprise": "what really",
        "anger": "stop it now",
        "sadness": "so sad sorry",
        "disgust": "gross ugh",
        "fear": "scared afraid",
    }
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 4), ("dev", 2), ("test", 2)):
        with (root / f"{split}_sent_emo.csv").open("w", newline="") as handle:
            w = csv.writer(handle)
            w.writerow(
                [
                    "Sr No.",
                    "Utterance",
                    "Speaker",
                    "Emotion",
                    "Sentiment",
                    "Dialogue_ID",
                    "Utterance_ID",
                    "Season",
                    "Episode",
                    "StartTime",
                    "EndTime",
                ]
            )
            i = 0
            for emotion, cue in cues.items():
                for k in range(n):
                    w.writerow(
                        [i, f"{cue} number {k}", "Ross", emotion, "neutral", i, 0, 1, 1, "0", "1"]
                    )
                    i += 1
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "meld")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench" / "meld")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--dry-run", action="store_true", help="generated mini-MELD, 1 epoch")
    args = parser.parse_args(argv)
    command = "python benchmarks/meld.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    name = "meld"
    if args.dry_run:
        args.data = make_mini_meld(args.work / "data")
        args.results, args.seeds, name = args.work / "results", [0], "meld_dry"
        TRAIN.update(epochs=1, patience=1)
    if not args.data.is_dir():
        sys.exit(f"MELD CSVs not found at {args.data} (set ESVA_SHARED or --data)")
    from esva.data.datasets import load_dataset

    t0 = time.perf_counter()
    clips = list(load_dataset("meld", args.data))
    store = extract_text(clips, args.work / "store", args.workers)
    lin = logreg(store, clips)
    print(f"[meld] logistic regression: test weighted F1 {lin['test']['weighted_f1']:.3f}")
    esva = run_jobs(
        [text_job(store, s, args.work / "runs") for s in args.seeds],
        min(args.workers, len(args.seeds)),
        "meld",
    )
    write_report(args.results, clips, esva, lin, command, name)
    print(f"[meld] done in {(time.perf_counter() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
