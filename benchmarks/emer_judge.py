"""Benchmark: calibrate the local EMER judge against the published EMER-v1 baseline scores.

    python benchmarks/emer_judge.py                 # SmolLM2-135M, all 100 samples, resumable
    python benchmarks/emer_judge.py --limit 10      # a quick look

Data: ``../shared/data/mer_reference/emer_baselines/`` (AffectGPT's EMER-v1: 100 Chinese
references in ``gt.csv`` and six systems' answers). The judge scores every system's answers for
clue overlap and label overlap (0-10, :mod:`esva.evaluate.emer_judge`); the per-system means are
then rank-correlated with the published scores (judged by gpt-3.5-turbo-16k-0613, now retired).

Two controls show whether the judge reads the texts at all: the reference scored against
itself (should be near 10) and one system's answers paired with *another* sample's reference
(should score lower than the matched pairs; reported as the share of samples where the
matched pair scored higher, 0.5 = chance).

Every score is cached in ``--work`` (one JSON per system), so a killed run continues.
Writes ``results/emer_judge.md`` and ``results/emer_judge.json``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, markdown_table, require_shared

SYSTEMS = ("pandagpt", "valley", "videochatemb", "videochattext", "videochatgpt", "videollama")
CONTROL = "pandagpt"  # whose answers are also paired with the wrong references
HEADER = ["system", "published clue", "judge clue", "published label", "judge label", "unparsed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="smollm2-135m-instruct")
    parser.add_argument("--mode", default="expected", choices=["expected", "generate"])
    parser.add_argument("--limit", type=int, default=None, help="first N samples only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "llm" / "emer_judge")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "emer_judge")
    args = parser.parse_args()

    import torch

    from esva.evaluate.emer_judge import (
        JUDGE_NOTE,
        PUBLISHED_EMER,
        EmerJudge,
        LocalJudge,
        rank_correlation,
        read_reasons,
    )
    from esva.io import read_json, write_json

    torch.set_num_threads(args.threads)
    data = require_shared() / "mer_reference" / "emer_baselines"
    gt = read_reasons(data / "gt.csv")
    names = list(gt)[: args.limit] if args.limit else list(gt)
    gt = {n: gt[n] for n in names}
    systems = {s: read_reasons(data / f"{s}.csv") for s in SYSTEMS}
    # Controls: the reference itself, and CONTROL's answers shifted by one sample.
    systems["reference (self)"] = dict(gt)
    systems["mismatched " + CONTROL] = {
        n: systems[CONTROL][names[(i + 1) % len(names)]] for i, n in enumerate(names)
    }

    started = time.perf_counter()
    judge = EmerJudge(LocalJudge(args.backbone), mode=args.mode)
    work = args.work / f"{Path(args.backbone).name}-{args.mode}"
    results, caches = {}, {}
    calls = 0
    for system, answers in systems.items():
        path = work / f"{system.replace(' ', '_')}.json"
        cache = read_json(path) if path.exists() else {}
        which = ("clue", "label") if system in SYSTEMS else ("clue",)
        for start in range(0, len(names), 10):  # save every 10 samples
            chunk = names[start : start + 10]
            todo = sum(k not in cache.get(n, {}) for n in chunk for k in which)
            t0 = time.perf_counter()
            judge.score({n: gt[n] for n in chunk}, answers, which, cache)
            calls += todo
            write_json(path, cache)
            if todo:
                print(
                    f"[{system}] {start + len(chunk)}/{len(names)} "
                    f"({(time.perf_counter() - t0) / max(1, todo):.2f} s per score)",
                    flush=True,
                )
        results[system] = judge.score(gt, answers, which, cache)
        caches[system] = cache

    published_clue = {s: PUBLISHED_EMER[s][0] for s in SYSTEMS}
    published_label = {s: PUBLISHED_EMER[s][1] for s in SYSTEMS}
    corr = {
        "clue": rank_correlation({s: results[s]["clue"] for s in SYSTEMS}, published_clue),
        "label": rank_correlation({s: results[s]["label"] for s in SYSTEMS}, published_label),
    }
    matched = caches[CONTROL]
    wrong = caches["mismatched " + CONTROL]
    wins = [
        (matched[n]["clue"] > wrong[n]["clue"]) + 0.5 * (matched[n]["clue"] == wrong[n]["clue"])
        for n in names
        if matched[n].get("clue") is not None and wrong[n].get("clue") is not None
    ]
    seconds = time.perf_counter() - started
    summary = {
        "judge": judge.backend.name,
        "mode": args.mode,
        "n_samples": len(names),
        "systems": results,
        "published": PUBLISHED_EMER,
        "rank_correlation": corr,
        "matched_beats_mismatched": sum(wins) / len(wins) if wins else None,
        "seconds": seconds,
        "new_scores": calls,
        "note": JUDGE_NOTE,
    }
    write_json(args.out.with_suffix(".json"), summary)

    rows = []
    for s in SYSTEMS:
        r = results[s]
        rows.append(
            [
                s,
                PUBLISHED_EMER[s][0],
                f"{r['clue']:.2f}",
                PUBLISHED_EMER[s][1],
                f"{r['label']:.2f}",
                r["clue_unparsed"] + r["label_unparsed"],
            ]
        )
    for s in ("reference (self)", "mismatched " + CONTROL):
        rows.append([s, "-", f"{results[s]['clue']:.2f}", "-", "-", results[s]["clue_unparsed"]])
    lines = [
        "# EMER judge calibration (issue 6)",
        "",
        f"`python benchmarks/emer_judge.py` on {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"torch {torch.__version__}, {args.threads} thread(s); judge `{judge.backend.name}`, "
        f"mode `{args.mode}`; {len(names)} EMER-v1 samples (Chinese); {seconds:.0f} s "
        f"({calls} new scores).",
        "",
        f"**{JUDGE_NOTE}**",
        "",
        markdown_table(HEADER, rows),
        "",
        "Rank correlation of the judge's per-system means with the published ones (6 systems):",
        "",
        markdown_table(
            ["score", "Spearman ρ", "p", "Kendall τ", "p"],
            [
                [k, *(f"{v[m]:.3f}" for m in ("spearman", "spearman_p", "kendall", "kendall_p"))]
                for k, v in corr.items()
            ],
        ),
        "",
        f"Control: {CONTROL}'s answer scored higher against its own reference than against "
        f"the next sample's in {100 * summary['matched_beats_mismatched']:.0f} % of samples "
        "(50 % = the judge does not read the pairing).",
        "",
    ]
    args.out.with_suffix(".md").parent.mkdir(parents=True, exist_ok=True)
    from esva.io import atomic_write

    with atomic_write(args.out.with_suffix(".md")) as handle:
        handle.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
