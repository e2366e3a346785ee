"""``esva explain`` out of the box, measured: labels, conclusions, cue faithfulness, diversity,
open vocabulary, latency and memory -> ``results/explain.md`` (+ .json).

Held-out clips (benchmarks/_explain_data.py's test split: speakers neither the explanation
adapter nor its LM weight ever saw): TESS YAF, EMOVO f3/m3 and ASED speakers (``--per-class``
clips per corpus and emotion), MEAD W011 (silent faces) and Actor_01's full audio-video takes,
with ``esva explain``'s defaults (the shipped recogniser, the shipped adapter, ASR on, 2 sampled
reasonings of at most 40 tokens). Labels: the recogniser alone (head), the adapter's LM alone
(its class-word likelihoods from the clip, without the head's answer) and the fused label that
``esva explain`` returns. Baseline in the same run: the cue-template explanation
(``esva.llm.cues.cue_sentences`` plus the same conclusion), which needs no LM. Open vocabulary:
the explanation's emotion words against the gold label with ``esva score ov``.

Cold runs: the whole command ``esva explain FILE --json`` in a fresh process, for an audio
file, a talking-face video and a silent face video (wall time and peak RSS)::

    python benchmarks/explain.py [--per-class 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, markdown_table, require_shared


def held_out(shared: Path, per_class: int) -> list:
    """The benchmark's clips: per corpus and emotion ``per_class`` test-speaker clips, and every
    held-out audio-visual clip."""
    from _explain_data import all_items

    chosen, seen = [], Counter()
    for it in all_items(shared):
        if it.split != "test":
            continue
        if it.kind == "speech":
            if seen[(it.corpus, it.label)] >= per_class:
                continue
            seen[(it.corpus, it.label)] += 1
        chosen.append(it)
    return chosen


def score_ov(names, gold, words_, work: Path) -> dict:
    """``esva score ov`` on the explanations' emotion words (gold: the clip's label)."""
    import csv

    work.mkdir(parents=True, exist_ok=True)
    for fname, lists in (("gold.csv", [[g] for g in gold]), ("pred.csv", words_)):
        with open(work / fname, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["name", "openset"])
            for n, lst in zip(names, lists, strict=True):
                w.writerow([n, "[" + ", ".join(f"'{x}'" for x in lst) + "]"])
    proc = subprocess.run(
        [sys.executable, "-m", "esva.cli.main", "score", "ov", "--gold", str(work / "gold.csv"),
         "--pred", str(work / "pred.csv"), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(proc.stdout)


def cold_run(path: Path, threads: int) -> dict:
    """The whole command in a fresh process: wall time, exit status, peak RSS."""
    code = (
        "import sys\n"
        "from esva.cli.main import main\n"
        "rc = main(['explain', sys.argv[1], '--json'])\n"
        # VmHWM: this process's own peak (ru_maxrss would inherit the parent's at fork).
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "sys.stderr.write('RSS %s\\n' % hwm)\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    rss = [int(x.split()[1]) for x in proc.stderr.splitlines() if x.startswith("RSS ")]
    result = {"file": path.name, "rc": proc.returncode, "wall_s": round(wall, 2)}
    result["peak_rss_mb"] = round(rss[-1] / 1024) if rss else None
    if proc.returncode == 0:
        out = json.loads(proc.stdout)
        result["answer"] = {k: out[k] for k in ("label", "explanation", "modalities")}
    else:
        err = [x for x in proc.stderr.splitlines() if x.strip() and not x.startswith("RSS ")]
        result["error"] = err[-1] if err else ""
    return result


def words(text: str) -> int:
    return len(text.split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "explain")
    parser.add_argument("--no-cold", action="store_true")
    args = parser.parse_args()
    shared = require_shared()

    import torch
    from sklearn.metrics import f1_score

    from esva.apps.explain import CueExplainer
    from esva.llm.conclude import CONCLUSION
    from esva.llm.cues import (
        ClipCueSet,
        FaceTrackCue,
        VoiceCue,
        check_sentence,
        cue_sentences,
        split_sentences,
    )
    from esva.llm.parse import label_strict

    torch.set_num_threads(args.threads)
    cold = []  # first, while this process is small (a child's ru_maxrss starts at its parent's)
    if not args.no_cold:
        examples = [
            shared / "ravdess_speech" / "Actor_01" / "03-01-08-01-01-02-01.flac",
            shared / "ravdess_av" / "Actor_01" / "01-01-08-01-01-02-01.mp4",
            sorted((shared / "mead_faces").glob("W011*happy*.mp4"))[0],
        ]
        cold = [cold_run(p, args.threads) for p in examples]
    clips = held_out(shared, args.per_class)
    t0 = time.perf_counter()
    explainer = CueExplainer.from_pretrained()
    load_s = time.perf_counter() - t0
    rows, times = [], []
    for it in clips:
        t = time.perf_counter()
        r = explainer.explain(it.path)
        times.append(time.perf_counter() - t)
        rows.append(r)
        print(f"{it.name} ({it.kind}): {it.label} -> {r['label']}: {r['explanation']}", flush=True)
    with open("/proc/self/status") as status:  # this process's own peak (VmHWM, kB)
        rss_mb = int(next(x for x in status if x.startswith("VmHWM")).split()[1]) / 1024
    classes = list(rows[0]["probabilities"])
    gold = [it.label for it in clips]

    def second(r, key, default):
        return (r.get("second_opinion") or {}).get(key) or default

    head = [second(r, "recogniser_label", r["label"]) for r in rows]
    lm = [second(r, "lm_label", r["label"]) for r in rows]
    fused = [r["label"] for r in rows]

    def wf1(pred, keep=None) -> float:
        idx = [i for i in range(len(rows)) if keep is None or clips[i].kind == keep]
        if not idx:
            return float("nan")
        g, p = [gold[i] for i in idx], [pred[i] for i in idx]
        return round(f1_score(g, p, average="weighted", labels=classes, zero_division=0), 4)

    def cues_of(r) -> ClipCueSet:
        c = r["cues"]
        face = FaceTrackCue(**c["face"]) if c["face"] else None
        return ClipCueSet([VoiceCue(**v) for v in c["voice"]], c["voice_reference"], face)

    concl = sum(label_strict(r["explanation"], classes) == r["label"] for r in rows)
    ends = sum(r["explanation"].endswith(CONCLUSION.format(label=r["label"])) for r in rows)
    shipped = [(s["sentence"], cues_of(r)) for r in rows for s in r["cues"]["sentences"]]
    faithful = sum(not check_sentence(s, c) for s, c in shipped)
    generated = sum(len(r["cues"]["sentences"]) for r in rows if r["explanation_source"] == "lm")
    why = Counter(d.get("why", "") for r in rows for d in r["dropped_sentences"])
    dropped = why["unsupported cue"]
    template = [
        " ".join([*cue_sentences(cues_of(r)), CONCLUSION.format(label=r["label"])]) for r in rows
    ]

    def diversity(texts: list[str]) -> tuple[float, float, float, float]:
        sentences = Counter(s for t in texts for s in split_sentences(t)[:-1])
        top = sentences.most_common(1)[0][1] / len(texts) if sentences else 0.0
        top_text = Counter(texts).most_common(1)[0][1] / len(texts)
        return len(set(texts)) / len(texts), top, sum(map(words, texts)) / len(texts), top_text

    lm_div, tpl_div = diversity([r["explanation"] for r in rows]), diversity(template)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # the two CSVs esva score ov reads
        ov = score_ov(
            [it.name for it in clips], gold, [r["open_vocabulary"] for r in rows], Path(tmp)
        )
    warm = sorted(times[1:]) or times
    kinds = Counter(it.kind for it in clips)
    summary = {
        "clips": len(rows),
        "kinds": dict(kinds),
        "corpora": dict(Counter(it.corpus for it in clips)),
        "threads": args.threads,
        "label_weighted_f1": {
            name: {"all": wf1(pred), **{k: wf1(pred, k) for k in kinds}}
            for name, pred in (("head", head), ("lm_alone", lm), ("fused", fused))
        },
        "lm_weight": second(rows[0], "lm_weight", 0.0),
        "conclusion_names_label": round(concl / len(rows), 4),
        "ends_with_forced_conclusion": round(ends / len(rows), 4),
        "shipped_sentences": len(shipped),
        "shipped_faithful": round(faithful / max(1, len(shipped)), 4),
        "generated_sentences_dropped": dict(why),
        "generated_sentences_kept": generated,
        "explanations_from_cue_fallback": sum(r["explanation_source"] == "cues" for r in rows),
        "open_vocabulary": {k: ov.get(k) for k in ("n", "accuracy", "recall", "average")},
        "lm": {
            "distinct": lm_div[0],
            "top_sentence_share": lm_div[1],
            "mean_words": lm_div[2],
            "top_explanation_share": lm_div[3],
        },
        "template": {
            "distinct": tpl_div[0],
            "top_sentence_share": tpl_div[1],
            "mean_words": tpl_div[2],
            "top_explanation_share": tpl_div[3],
        },
        "load_s": round(load_s, 2),
        "warm_s_median": round(warm[len(warm) // 2], 2),
        "warm_s_max": round(max(warm), 2),
        "warm_s_median_by_kind": {
            k: round(sorted(t for t, it in zip(times, clips, strict=True) if it.kind == k)[
                len([1 for it in clips if it.kind == k]) // 2], 2) for k in kinds
        },
        "peak_rss_mb_in_process": round(rss_mb, 1),
        "loadavg_1min": os.getloadavg()[0],
    }  # fmt: skip
    out = {"summary": summary, "cold": cold, "clips": [
        {"file": it.name, "kind": it.kind, "corpus": it.corpus, "gold": g, **{k: r[k] for k in (
            "label", "explanation", "explanation_source", "dropped_sentences", "second_opinion",
            "open_vocabulary")}}
        for it, g, r in zip(clips, gold, rows, strict=True)
    ]}  # fmt: skip
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    s = summary
    f = s["label_weighted_f1"]
    kind_names = sorted(kinds)
    f1_table = markdown_table(
        ["label from", "all", *kind_names],
        [[name, f[key]["all"], *[f[key][k] for k in kind_names]] for name, key in (
            ("shipped recogniser alone (head)", "head"),
            ("adapter LM alone (clip only, no head answer)", "lm_alone"),
            (f"esva explain: fused, w = {s['lm_weight']}", "fused"))],
    )  # fmt: skip
    table = markdown_table(
        ["measure", "esva explain (adapter + checker)", "cue template (no LM)"],
        [
            ["conclusion names the label", s["conclusion_names_label"], 1.0],
            ["shipped sentences faithful to the cues", s["shipped_faithful"], 1.0],
            ["generated sentences kept", generated, "-"],
            ["dropped: unsupported cue / unfinished at the token limit / repeated",
             f"{dropped} / {why['unfinished']} / {why['repeated']}", "-"],
            ["explanations from the cue fallback", s["explanations_from_cue_fallback"], "-"],
            ["distinct explanations / clips", s["lm"]["distinct"], s["template"]["distinct"]],
            ["most common explanation, share of clips", s["lm"]["top_explanation_share"],
             s["template"]["top_explanation_share"]],
            ["most common sentence, share of clips", s["lm"]["top_sentence_share"],
             s["template"]["top_sentence_share"]],
            ["mean words", s["lm"]["mean_words"], s["template"]["mean_words"]],
            ["open vocabulary (esva score ov): accuracy / recall",
             f"{s['open_vocabulary']['accuracy']:.3f} / {s['open_vocabulary']['recall']:.3f}", "-"],
        ],
    )  # fmt: skip
    examples = []
    for kind in kind_names:
        for it, r in [(it, r) for it, r in zip(clips, rows, strict=True) if it.kind == kind][:3]:
            examples.append(
                [kind, it.name, it.label, r["label"], r["explanation"].replace("|", "/")]
            )
    lines = [
        "# esva explain, out of the box",
        "",
        f"`python benchmarks/explain.py --per-class {args.per_class} --threads {args.threads}`: "
        f"{len(rows)} held-out clips ({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))}; "
        f"corpora {dict(sorted(s['corpora'].items()))}), {args.threads} torch threads, 1-min "
        f"load average {s['loadavg_1min']:.1f} on the 2-core machine at the end of the run.",
        "",
        "## Labels (weighted F1 against the gold label)",
        "",
        f1_table,
        "",
        "## Explanations",
        "",
        table,
        "",
        f"Latency per clip (in process, models loaded once in {s['load_s']} s): median "
        f"{s['warm_s_median']} s (by kind {s['warm_s_median_by_kind']}), max "
        f"{s['warm_s_max']} s; peak RSS {round(s['peak_rss_mb_in_process'])} MB.",
        "",
        "## Example answers (the first three clips of each kind)",
        "",
        markdown_table(["kind", "clip", "gold", "label", "explanation"], examples),
        "",
    ]
    if cold:
        lines += ["## Cold runs (`esva explain FILE --json` in a fresh process)", ""]
        lines.append(
            markdown_table(
                ["file", "exit", "wall s", "peak RSS MB", "answer"],
                [
                    [
                        c["file"],
                        c["rc"],
                        c["wall_s"],
                        c["peak_rss_mb"],
                        (c["answer"]["label"] + ": " + c["answer"]["explanation"]).replace("|", "/")
                        if c["rc"] == 0
                        else c.get("error", ""),
                    ]
                    for c in cold
                ],
            )
        )
    args.results.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
