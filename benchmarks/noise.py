"""Benchmark: noise robustness on RAVDESS speech, as MER2024-NOISE does it — corrupted test audio.

    python benchmarks/noise.py    # uses benchmarks/ravdess.py's runs; writes results/noise.md

The same folds and the same trained models as ``benchmarks/ravdess.py`` (trained on clean
speech; a missing run is trained first). Only the **test** actors' audio is corrupted, at 10 and
5 dB SNR, with two noises:

* ``white``: Gaussian white noise;
* ``babble``: the sum of 5 clips of the fold's *training* actors (never a test actor), each
  scaled to unit RMS and circularly shifted at random, tiled to the clip's length.

SNR is over the whole clip (RMS of the clean clip / RMS of the added noise); the noise draws are
seeded per clip, so the corrupted files are the same on every run. The corrupted audio goes
through the same ``esva extract`` encoders (and openSMILE for the baseline) as the clean audio,
and the clean-trained models are scored on it: the table gives weighted F1 under each condition
and the drop from clean, for ESVA and the baselines.

Video blur (downscale x2, x4) needs video, which only Actor_01 has: it is a sanity check in
``benchmarks/ravdess_av.py`` (results/ravdess_av.md), not a score.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ravdess as rb

CONDITIONS = (("white", 10.0), ("white", 5.0), ("babble", 10.0), ("babble", 5.0))
BABBLE_TALKERS = 5
SAMPLE_RATE = 16_000


def cond_name(kind: str, snr: float) -> str:
    return f"{kind}-{snr:g}dB"


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) or 1e-12


def babble(pool: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of babble: BABBLE_TALKERS pool clips, unit RMS, shifted, tiled, summed."""
    out = np.zeros(n)
    for i in rng.choice(len(pool), size=BABBLE_TALKERS, replace=False):
        x = pool[i] / _rms(pool[i])
        x = np.roll(np.resize(x, max(n, len(x))), rng.integers(len(x)))[:n]
        out += x
    return out


def mix(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, bool]:
    """speech + noise scaled to ``snr_db``; the mixture is scaled down (SNR kept) if it clips."""
    y = speech + noise * (_rms(speech) / _rms(noise)) / 10 ** (snr_db / 20)
    peak = float(np.abs(y).max())
    return (y * (0.999 / peak) if peak > 0.999 else y), peak > 0.999


def corrupt(bench: rb.Bench, kind: str, snr: float, folder: Path) -> list:
    """Write the corrupted version of every clip (as a test clip of its fold) as 16-bit FLAC."""
    import soundfile as sf

    from esva.io import atomic_path
    from esva.media.decode import load_audio

    name = cond_name(kind, snr)
    out, clipped, t0 = [], 0, time.perf_counter()
    for f in range(bench.folds.k):
        train, _, test = bench.folds.split(f)
        pool = None
        for clip in test:
            path = folder / f"{clip.name}.flac"
            out.append(replace(clip, audio=path, video=None))
            if path.exists():
                continue
            if kind == "babble" and pool is None:
                pool = [load_audio(c.audio).samples for c in train]
            # A per-clip seed: the same noise whatever the order or the subset of clips run.
            rng = np.random.default_rng([zlib.crc32(f"{name}/{clip.name}".encode()), 0])
            speech = load_audio(clip.audio).samples.astype(np.float64)
            noise = (
                rng.standard_normal(len(speech))
                if kind == "white"
                else babble(pool, len(speech), rng)
            )
            y, was_clipped = mix(speech, noise, snr)
            clipped += was_clipped
            with atomic_path(path) as tmp:
                sf.write(tmp, y.astype(np.float32), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    print(
        f"[noise] {name}: audio ready ({clipped} mixtures rescaled to avoid clipping; "
        f"{time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    return sorted(out, key=lambda c: c.name)


def evaluate_runs(results: list[dict], runs: Path, tag: str, view: Path, out: Path) -> list[dict]:
    """Score each clean-trained run (fold x seed) on the corrupted test clips of its fold."""
    from esva.recipes.evaluate_model import evaluate_model

    scored = []
    for r in results:
        target = out / tag / f"fold{r['fold']}-seed{r['seed']}.json"
        if target.exists():
            scored.append(json.loads(target.read_text()))
            continue
        ev = evaluate_model(
            runs / tag / f"fold{r['fold']}-seed{r['seed']}" / "best",
            view,
            target.with_suffix(""),
            split="test",
            labels_file=f"labels_fold{r['fold']}.csv",
        )
        m = ev["metrics"]
        row = {"fold": r["fold"], "seed": r["seed"], "test": {k: m[k] for k in rb.METRICS}}
        from esva.io import write_json

        write_json(target, row)
        scored.append(row)
    return scored


def baseline_on(features_clean: dict, features_noisy: dict, folds, kind: str) -> list[dict]:
    """The clean-trained linear baseline (same C as the clean benchmark), scored on noisy test."""
    clean = rb.linear_baseline(features_clean, folds, kind)
    from esva.evaluate.classification import score_classification

    out = []
    for r in clean:
        _, _, test = folds.split(r["fold"])
        x = np.stack([features_noisy[c.name] for c in test])
        pred = dict(zip([c.name for c in test], r["model"].predict(x).tolist(), strict=True))
        s = score_classification({c.name: c.label for c in test}, pred, rb.folds_classes(folds))
        out.append({"fold": r["fold"], "test": {k: s[k] for k in rb.METRICS}})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=rb.SHARED / "ravdess_speech")
    parser.add_argument("--work", type=Path, default=rb.ROOT / "runs" / "bench" / "ravdess")
    parser.add_argument("--folds-file", type=Path, default=rb.FOLDS_DIR / "ravdess_speech_k5.json")
    parser.add_argument("--results", type=Path, default=rb.RESULTS)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=list(rb.SEEDS), help="ESVA training seeds"
    )
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="only write the corrupted audio and extract its features (e.g. while "
        "benchmarks/ravdess.py is still training)",
    )
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        sys.exit(f"RAVDESS speech not found at {args.data} (set ESVA_SHARED or --data)")
    t0 = time.perf_counter()
    bench = rb.Bench(
        args.data, args.work, args.folds_file, args.results, args.workers, tuple(args.seeds)
    )
    bench.prepare()
    choice = args.work / "layer_choice.json"
    layer = json.loads(choice.read_text())["chosen"] if choice.exists() else bench.choose_layer()[0]
    view = bench.view(layer)
    wt = f"whisper-tiny__{rb.layer_slug(layer)}"
    models = {
        "ESVA (full), whisper-tiny": (f"esva__{wt}", "whisper-tiny"),
        "ESVA (full), whisper-tiny+prosody": (f"esva__{wt}+prosody", "whisper-tiny+prosody"),
    }
    if args.prepare_only:  # only the corrupted audio and its features (no model is touched)
        for kind, snr in CONDITIONS:
            folder = args.work / "noise" / cond_name(kind, snr)
            clips = corrupt(bench, kind, snr, folder / "audio")
            for enc, lay in (("whisper-tiny", layer), ("prosody", None)):
                _extract(clips, folder, enc, lay, args.workers)
            rb.egemaps_features(clips, folder / "egemaps.npz")
        return
    clean = {
        name: rb.run_jobs(bench.jobs(tag, view, streams, {}), args.workers, "noise")
        for name, (tag, streams) in models.items()
    }
    names = [c.name for c in bench.clips]
    eg_clean = rb.egemaps_features(bench.clips, args.work / "stores" / "egemaps.npz")
    pooled_clean = rb.mean_pooled(view, "whisper-tiny", names)

    table: dict[str, dict[str, list[dict]]] = {n: {"clean": clean[n]} for n in models}
    base_names = {
        "eGeMAPS + logistic regression": "logreg",
        "eGeMAPS + linear SVM": "svm",
        "mean-pool whisper-tiny + logistic regression": "logreg",
    }
    for n, kind in base_names.items():
        feats = pooled_clean if n.startswith("mean-pool") else eg_clean
        table[n] = {"clean": rb.linear_baseline(feats, bench.folds, kind)}
    for kind, snr in CONDITIONS:
        name = cond_name(kind, snr)
        folder = args.work / "noise" / name
        clips = corrupt(bench, kind, snr, folder / "audio")
        streams = {
            "whisper-tiny": _extract(clips, folder, "whisper-tiny", layer, args.workers),
            "prosody": _extract(clips, folder, "prosody", None, args.workers),
        }
        nview = rb.make_view(folder / "view", streams, bench.folds, only_test=True)
        for n, (tag, _) in models.items():
            table[n][name] = evaluate_runs(
                clean[n], args.work / "runs", tag, nview, folder / "eval"
            )
        eg = rb.egemaps_features(clips, folder / "egemaps.npz")
        pooled = rb.mean_pooled(nview, "whisper-tiny", names)
        for n, kind_ in base_names.items():
            feats = (pooled_clean, pooled) if n.startswith("mean-pool") else (eg_clean, eg)
            table[n][name] = baseline_on(*feats, bench.folds, kind_)
        means = {n: np.mean([r["test"]["weighted_f1"] for r in v[name]]) for n, v in table.items()}
        print(f"[noise] {name}: weighted F1 {means}", flush=True)
    command = "python benchmarks/noise.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    write_report(args.results, table, layer, tuple(args.seeds), command)
    print(f"[noise] done in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)


def _extract(clips: list, folder: Path, encoder: str, layer: str | None, workers: int) -> Path:
    slug = f"{encoder}-{rb.layer_slug(layer)}" if layer else encoder
    rb.extract(clips, folder / "stores" / slug, encoder, layer, workers)
    return folder / "stores" / slug / encoder


def write_report(
    results: Path, table: dict, layer: str, seeds: tuple[int, ...], command: str
) -> Path:
    from esva.io import atomic_write, write_json

    conds = ["clean"] + [cond_name(k, s) for k, s in CONDITIONS]

    def f1(runs: list[dict]) -> tuple[float, float]:
        v = np.array([r["test"]["weighted_f1"] for r in runs])
        return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0

    lines = [
        "# Noise robustness on RAVDESS speech (MER2024-NOISE style)",
        "",
        "Same 5 speaker-independent folds and the same clean-trained models as "
        "results/ravdess.md; only the test actors' audio is corrupted (white noise, or babble "
        f"of {BABBLE_TALKERS} training-fold actors' clips), at 10 and 5 dB SNR (whole-clip RMS). "
        f"Weighted F1, mean ± std over folds (x {len(seeds)} seed(s) {list(seeds)} for ESVA). "
        f"Whisper layer `{layer}`.",
        "",
        "| model | " + " | ".join(conds) + " | mean drop (points) |",
        "|---|" + "---|" * (len(conds) + 1),
    ]
    summary = {}
    for name, per in table.items():
        scores = {c: f1(per[c]) for c in conds if c in per}
        drop = 100 * (scores["clean"][0] - np.mean([scores[c][0] for c in conds[1:]]))
        summary[name] = {"weighted_f1": scores, "mean_drop_points": drop}
        lines.append(
            f"| {name} | " + " | ".join(rb.pm(scores[c]) for c in conds) + f" | {drop:.1f} |"
        )
    esva = [n for n in summary if n.startswith("ESVA")]
    base = [n for n in summary if n.startswith("eGeMAPS")]
    lines += [
        "",
        "Drop from clean (weighted F1 points), per condition:",
        "",
        "| model | " + " | ".join(conds[1:]) + " |",
        "|---|" + "---|" * (len(conds) - 1),
    ]
    for name in summary:
        s = summary[name]["weighted_f1"]
        lines.append(
            f"| {name} | "
            + " | ".join(f"{100 * (s['clean'][0] - s[c][0]):.1f}" for c in conds[1:])
            + " |"
        )
    if esva and base:
        e = np.mean([summary[n]["mean_drop_points"] for n in esva])
        b = np.mean([summary[n]["mean_drop_points"] for n in base])
        lines += [
            "",
            f"Mean drop: ESVA {e:.1f} points vs the eGeMAPS baselines {b:.1f} points "
            f"({'ESVA degrades less' if e < b else 'ESVA degrades more'} in absolute points; "
            "compare the noisy scores too, since ESVA starts higher).",
        ]
    lines += [
        "",
        "Video blur (downscale x2, x4): only Actor_01 has video; see results/ravdess_av.md "
        "(sanity check, not a score).",
        "",
        f"Command: `{command}`",
        "",
    ]
    with atomic_write(results / "noise.md") as handle:
        handle.write("\n".join(lines))
    write_json(results / "noise.json", summary)
    print("\n".join(lines))
    return results / "noise.md"


if __name__ == "__main__":
    main()
