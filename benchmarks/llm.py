"""Benchmark: the LLM path (projectors + LoRA on SmolLM2-135M) on RAVDESS speech, CPU only.

    python benchmarks/llm.py                      # 5 folds, 1 epoch each; resumable
    python benchmarks/llm.py --folds 0 --epochs 1 # one fold
    python benchmarks/llm.py --only speed         # CPU timings and memory only

What runs, on the speaker-independent folds of the core benchmark
(``benchmarks/folds/ravdess_speech_k5.json``; test actors only scored):

1. MERR-style captions for all 1200 clips (:mod:`esva.recipes.captions`: prosody cues against each
   actor's median clip, the RAVDESS statement, the label), plus the builder on the 7 full
   audio-video takes of Actor_01 with face cues (fer-cnn): examples go into the results;
2. per fold, instruction tuning (:mod:`esva.recipes.train_llm`) on whisper-tiny (last layer) +
   prosody features, recognition on every training clip plus reasoning on a share of them;
   then the test actors' recognition answers -> labels (strict parser and Emotion-LLaMA's
   last-word rule) -> MER2023 scores, and reasoning answers for a subset -> emotion words ->
   open-vocabulary scores (``score_openset``) and the emotion-wheel variant (``score_wheel``);
3. the discriminative ESVA head on the same features and folds: read from the core benchmark's
   runs (``runs/bench/ravdess/runs``) when they exist, else trained here (``--train-esva``);
4. CPU speed: LoRA training step time per 300-token sample (float32 and bfloat16 autocast),
   generation tokens/s, peak memory, each in a fresh process;
5. three example answers (label + explanation) of the fold-0 model on raw RAVDESS files,
   features extracted on the fly (the ``esva explain`` path).

Features are reused from the core benchmark's stores when present (``runs/bench/ravdess``),
else extracted into ``--work``. Each fold writes ``result.json`` and is skipped when it exists.
Writes ``results/llm.md`` and ``results/llm.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, markdown_table, require_shared, run_child

WORK = ROOT / "runs" / "llm" / "ravdess"
CORE = ROOT / "runs" / "bench" / "ravdess"  # the core benchmark's work folder
FOLDS_FILE = ROOT / "benchmarks" / "folds" / "ravdess_speech_k5.json"
RESULTS = ROOT / "results"
STREAM = "whisper-tiny+prosody"

# Fixed before any test score was seen, for the CPU budget (2 shared cores): one epoch, a
# quarter of the clips also as reasoning samples, 4 tokens per stream, LoRA as Emotion-LLaMA.
LLM_MODEL = {
    "tokens": 4,
    "backbone": "smollm2-135m-instruct",
    "autocast": "bfloat16",
    "lora": {"r": 64, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
    "max_length": 384,
    "max_new_tokens": 96,
}
LLM_DATA = {"recognition": 1.0, "reasoning": 0.25, "subtitles": True, "val_limit": 64}
LLM_TRAIN = {"batch_size": 8, "lr": 1e-3, "warmup": 0.05, "checkpoint_every": 20}
SPEED_HEADER = ["threads", "autocast", "tokens", "train s/sample", "gen tok/s", "peak MB", "load"]
REASONING_PER_FOLD = 16  # test clips per fold that also get a reasoning answer (slow on CPU)


# ----------------------------------------------------------------------------- data


def stores(clips, workers: int) -> dict[str, Path]:
    """Encoder folders: the core benchmark's when extracted, else extracted here."""
    from ravdess import extract

    found = {}
    for encoder, slug, layer in (("whisper-tiny", "whisper-tiny-last", "last"),):
        core = CORE / "stores" / slug
        store = core if (core / "manifest.jsonl").exists() else WORK / "stores" / slug
        extract(clips, store, encoder, layer, workers)
        found[encoder] = store / encoder
    core = CORE / "stores" / "prosody"
    store = core if (core / "manifest.jsonl").exists() else WORK / "stores" / "prosody"
    extract(clips, store, "prosody", None, workers)
    found["prosody"] = store / "prosody"
    return found


def write_transcripts(path: Path, clips) -> None:
    from esva.io import atomic_write

    with atomic_write(path, newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["name", "sentence"])
        w.writerows([c.name, c.text] for c in clips if c.text)


def build_captions(clips, prosody: Path) -> dict:
    """MERR files for all clips (speaker-relative prosody cues, statement, label)."""
    from esva.recipes.captions import build_merr, cues_from_store, write_merr

    out = WORK / "merr"
    if (out / "MERR_fine_grained.json").exists():
        from esva.data.datasets.merr import read_merr_json

        return read_merr_json(out / "MERR_fine_grained.json")
    t0 = time.perf_counter()
    cues = cues_from_store(prosody.parent, clips, voice="prosody", face=None)
    coarse, fine = build_merr(cues)
    write_merr(out, coarse, fine)
    print(f"[merr] {len(fine)} clips in {time.perf_counter() - t0:.0f} s -> {out}", flush=True)
    return fine


def av_captions(shared: Path) -> dict:
    """The builder with face cues on Actor_01's full audio-video takes (extracted here)."""
    from esva.data.datasets import load_dataset
    from esva.extract.pipeline import ExtractConfig
    from esva.extract.run import run_extract
    from esva.recipes.captions import build_merr, cues_from_store

    clips = list(load_dataset("ravdess", shared / "ravdess_av", modalities=("av",)))
    store = WORK / "stores" / "actor01-av"
    run_extract(clips, store, ExtractConfig(audio=["prosody"], visual=["fer-cnn"]), progress=False)
    cues = cues_from_store(store, clips, voice="prosody", face="fer-cnn")
    coarse, fine = build_merr(cues)
    return {"coarse": coarse, "fine": fine, "n": len(clips)}


# ----------------------------------------------------------------------------- one fold


def run_fold(fold: int, view: Path, classes: list[str], epochs: int, threads: int) -> dict:
    """Train on one fold, score its test actors; cached in result.json."""
    import torch

    from esva.evaluate.openset import score_openset
    from esva.evaluate.wheel import load_wheel_mapping, score_wheel
    from esva.llm.parse import emotion_words
    from esva.recipes.train_llm import (
        LLMRunConfig,
        generate_answers,
        load_data,
        load_trained,
        score_answers,
        train_llm,
    )

    out = WORK / "folds" / f"fold{fold}"
    result_path = out / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    raw = {
        "model": dict(LLM_MODEL),
        "data": {
            "root": str(view),
            "labels": f"labels_fold{fold}.csv",
            "streams": {"audio": STREAM},
            "encoder_options": {"whisper-tiny": {"layer": "last"}},
            "classes": classes,
            "merr": str(WORK / "merr" / "MERR_fine_grained.json"),
            "transcripts": str(WORK / "transcripts.csv"),
            **LLM_DATA,
        },
        "train": {
            **LLM_TRAIN,
            "epochs": epochs,
            "threads": threads,
            "out_dir": str(out),
            "progress": False,
        },
    }
    run = LLMRunConfig.from_dict(raw)
    resume = (out / "checkpoint" / "trainer_state.json").exists()
    t0 = time.perf_counter()
    trained = train_llm(run, resume=resume)
    train_s = time.perf_counter() - t0
    torch.set_num_threads(threads)

    data = load_data(run)
    model, _ = load_trained(trained.best_dir)
    t0 = time.perf_counter()
    answers = generate_answers(model, data.test, "recognition", 8, 8)
    gen_s = time.perf_counter() - t0
    gold = {c.name: c.label for c in data.test.clips}
    scores = score_answers(answers, gold, classes)

    # Reasoning answers for an even spread of test clips: open-vocabulary scoring.
    reasons = generate_answers(model, data.test, "reasoning", 4, 96, REASONING_PER_FOLD)
    gold_words = {n: emotion_words(gold[n]) or [gold[n]] for n in reasons}
    pred_words = {n: emotion_words(a) for n, a in reasons.items()}
    wheel_dir = require_shared() / "mer_reference" / "emotion_wheel"
    result = {
        "fold": fold,
        "train": trained.history,
        "best_epoch": trained.best_epoch,
        "train_seconds": train_s,
        "test": scores,
        "test_generation_seconds": gen_s,
        "openset": score_openset(gold_words, pred_words),
        "wheel": {
            k: v
            for k, v in score_wheel(gold_words, pred_words, load_wheel_mapping(wheel_dir)).items()
            if k != "per_wheel"
        },
        "recognition_answers": answers,
        "reasoning_answers": reasons,
    }
    from esva.io import write_json

    write_json(result_path, result)
    return result


# ----------------------------------------------------------------------------- ESVA head


def esva_results(view: Path, classes: list[str], folds: list[int], train: bool) -> dict:
    """Test weighted F1 of the discriminative ESVA head per fold, same features and folds."""
    found: dict[str, dict[int, list[float]]] = {}
    for tag in ("esva__whisper-tiny__last+prosody", "esva__whisper-tiny__last"):
        for base in (CORE / "runs", WORK / "esva"):
            for fold in folds:
                for path in sorted((base / tag).glob(f"fold{fold}-seed*/result.json")):
                    f1 = json.loads(path.read_text())["test"]["weighted_f1"]
                    found.setdefault(tag, {}).setdefault(fold, []).append(f1)
    tag = "esva__whisper-tiny__last+prosody"
    if train and any(f not in found.get(tag, {}) for f in folds):
        from ravdess import grid, run_jobs

        jobs = [j for j in grid(tag, view, STREAM, {}, 5, (0,), WORK / "esva", classes)]
        jobs = [j for j in jobs if j.fold in folds]
        for r in run_jobs(jobs, workers=1, label="esva"):
            found.setdefault(tag, {}).setdefault(r["fold"], []).append(r["test"]["weighted_f1"])
    return found


# ----------------------------------------------------------------------------- speed


SPEED_CODE = """
import torch
from esva.llm import EmotionLLM, EmotionLLMConfig
torch.set_num_threads(PAYLOAD["threads"])
torch.manual_seed(0)
cfg = EmotionLLMConfig(streams={"audio": 394}, tokens=4, autocast=PAYLOAD["autocast"],
                       max_length=1024)
m = EmotionLLM.build(cfg, download=False)
opt = torch.optim.AdamW(m.trainable_parameters(), lr=1e-4)
feats = {"audio": (torch.randn(1, 165, 394), torch.ones(1, 165, dtype=torch.bool))}
prompts = m.prompts("reasoning", feats, ["Kids are talking by the door"])
words = "The pitch rises and the voice grows louder and faster as the sentence goes on."
target = words
while m.prepare(feats, prompts, [target]).inputs_embeds.shape[1] < 300:
    target += " " + words
n = m.prepare(feats, prompts, [target]).inputs_embeds.shape[1]
m.train()
times = []
for i in range(4):
    t = time.perf_counter()
    out = m(feats, prompts, [target]); out.loss.backward(); opt.step(); opt.zero_grad()
    times.append(time.perf_counter() - t)
m.eval()
t = time.perf_counter()
answer = m.generate(feats, prompts, max_new_tokens=64, min_new_tokens=64)
gen = time.perf_counter() - t
RESULT = {"tokens": n, "step_s": sorted(times[1:])[1], "steps_s": times,
          "gen_tokens_per_s": 64 / gen, "load_average": os.getloadavg()[0], **PAYLOAD}
"""


def speed() -> list[dict]:
    rows = []
    for threads in (1, 2):
        for autocast in (None, "bfloat16"):
            r = run_child(SPEED_CODE, {"threads": threads, "autocast": autocast}, threads)
            print(f"[speed] {r}", flush=True)
            rows.append(r)
    return rows


# ----------------------------------------------------------------------------- examples


def examples(fold0_best: Path, clips, test_names: set[str], n: int = 3) -> list[dict]:
    """``esva explain`` on raw files of fold 0's test actors (one per emotion, first n)."""
    from esva.apps.explain import explain_file

    picked, seen = [], set()
    for c in clips:
        if c.name in test_names and c.label not in seen and c.label in ("angry", "sad", "happy"):
            picked.append(c)
            seen.add(c.label)
    out = []
    for c in picked[:n]:
        t0 = time.perf_counter()
        # asr=True: the model was trained with the statement as its subtitle, so the prompt
        # gets the transcript of the file, exactly as `esva explain` does by default.
        r = explain_file(c.audio, fold0_best, max_new_tokens=96, asr=True)
        out.append(
            {
                "clip": c.name,
                "gold": c.label,
                "label": r["label"],
                "explanation": r["explanation"],
                "transcript": r["transcript"],
                "flags": r["flags"],
                "seconds": time.perf_counter() - t0,
            }
        )
        print(f"[example] {out[-1]}", flush=True)
    return out


# ----------------------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folds", default="0,1,2,3,4")
    parser.add_argument("--epochs", type=int, default=1)
    # 1 thread: on 2 cores shared with other jobs, 2 OpenMP threads run ~10x slower (measured).
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="extraction processes")
    parser.add_argument("--only", choices=["all", "speed", "train"], default="all")
    parser.add_argument("--train-esva", action="store_true", help="train missing ESVA runs")
    args = parser.parse_args()

    from esva.io import atomic_write, write_json
    from ravdess import get_folds, load_clips, make_view

    shared = require_shared()
    summary: dict = {"started": time.strftime("%Y-%m-%d %H:%M")}
    if args.only in ("all", "speed"):
        summary["speed"] = speed()
    if args.only == "speed":
        write_json(RESULTS / "llm_speed.json", summary)
        return
    if "speed" in summary:  # measured now; kept for later runs that only train
        write_json(RESULTS / "llm_speed.json", {"speed": summary["speed"]})
    elif (RESULTS / "llm_speed.json").exists():
        summary["speed"] = json.loads((RESULTS / "llm_speed.json").read_text())["speed"]
        summary["speed_source"] = "results/llm_speed.json (an earlier `--only all|speed` run)"

    clips = load_clips(shared / "ravdess_speech")
    folds = get_folds(clips, FOLDS_FILE)
    classes = sorted({c.label for c in clips}, key=[c.label for c in clips].index)
    paths = stores(clips, args.workers)
    view = make_view(WORK / "view", paths, folds)
    write_transcripts(WORK / "transcripts.csv", clips)
    fine = build_captions(clips, paths["prosody"])
    summary["merr_examples"] = {
        name: fine[name]["smp_reason_caption"] for name in list(fine)[:: len(fine) // 4][:4]
    }
    summary["merr_av"] = av_captions(shared)

    wanted = [int(f) for f in args.folds.split(",")]
    results = {}
    for fold in wanted:
        t0 = time.perf_counter()
        results[fold] = run_fold(fold, view, classes, args.epochs, args.threads)
        s = results[fold]["test"]
        print(
            f"[fold {fold}] test weighted F1 strict {s['strict']['weighted_f1']:.3f}, last-word "
            f"{s['last_word']['weighted_f1']:.3f}, unparsed {s['unparsed']} "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    summary["folds"] = {
        f: {k: v for k, v in r.items() if not k.endswith("_answers")} for f, r in results.items()
    }
    summary["esva"] = esva_results(view, classes, wanted, args.train_esva)
    if 0 in results:
        test0 = set(results[0]["recognition_answers"])
        summary["examples"] = examples(WORK / "folds" / "fold0" / "best", clips, test0)
    write_json(RESULTS / "llm.json", summary)
    with atomic_write(RESULTS / "llm.md") as handle:
        handle.write(report(summary, args))
    print(report(summary, args))


def report(s: dict, args) -> str:
    import numpy as np
    import torch

    folds = s["folds"]
    lines = [
        "# LLM path on RAVDESS speech (issue 6)",
        "",
        f"`python benchmarks/llm.py {' '.join(sys.argv[1:])}` started "
        f"{s['started']}, {platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} thread(s) on 2 shared CPU cores (load average "
        f"{os.getloadavg()[0]:.1f} at the end). SmolLM2-135M-Instruct + projectors + LoRA "
        f"(r=64, alpha=16, q/v), {LLM_MODEL['tokens']} tokens from whisper-tiny (last) + "
        f"prosody frames, bfloat16 autocast; recognition on every training clip + reasoning "
        f"on {100 * LLM_DATA['reasoning']:.0f} % of them; {args.epochs} epoch(s) per fold.",
        "",
        "## Recognition, test actors (weighted F1, MER2023 scorer)",
        "",
    ]
    rows = []
    for f, r in folds.items():
        t = r["test"]
        esva = s["esva"].get("esva__whisper-tiny__last+prosody", {}).get(int(f))
        esva_w = s["esva"].get("esva__whisper-tiny__last", {}).get(int(f))
        rows.append(
            [
                f,
                f"{t['strict']['weighted_f1']:.3f}",
                f"{t['last_word']['weighted_f1']:.3f}",
                t["unparsed"],
                "-" if not esva else f"{np.mean(esva):.3f}",
                "-" if not esva_w else f"{np.mean(esva_w):.3f}",
                f"{r['train_seconds'] / 60:.0f}",
            ]
        )
    lines.append(
        markdown_table(
            [
                "fold",
                "LLM strict",
                "LLM last-word",
                "unparsed",
                "ESVA head, whisper+prosody",
                "ESVA head, whisper",
                "train min",
            ],
            rows,
        )
    )
    mean = {
        k: np.mean([r["test"][k]["weighted_f1"] for r in folds.values()])
        for k in ("strict", "last_word")
    }
    lines += [
        "",
        f"Mean over {len(folds)} fold(s): strict {mean['strict']:.3f}, last-word "
        f"{mean['last_word']:.3f}.",
        "",
        "## Open vocabulary (reasoning answers -> emotion words; gold = the label's word)",
        "",
        markdown_table(
            ["fold", "n", "OV accuracy", "OV recall", "wheel F (level1)"],
            [
                [
                    f,
                    r["openset"]["n"],
                    f"{r['openset']['accuracy']:.3f}",
                    f"{r['openset']['recall']:.3f}",
                    f"{r['wheel']['fscore']:.3f}",
                ]
                for f, r in folds.items()
            ],
        ),
        "",
    ]
    if s.get("speed"):
        source = f" — from {s['speed_source']}" if s.get("speed_source") else ""
        lines += [
            f"## CPU speed and memory (fresh process each){source}",
            "",
            markdown_table(
                SPEED_HEADER,
                [
                    [
                        r["threads"],
                        r["autocast"] or "float32",
                        r["tokens"],
                        f"{r['step_s']:.2f}",
                        f"{r['gen_tokens_per_s']:.1f}",
                        f"{r['peak_rss_mb']:.0f}",
                        f"{r['load_average']:.1f}",
                    ]
                    for r in s["speed"]
                ],
            ),
            "",
        ]
    if s.get("examples"):
        lines += ["## Example answers (fold-0 model, raw files of its test actors)", ""]
        for e in s["examples"]:
            lines.append(
                f"- `{e['clip']}` (gold {e['gold']}): **{e['label']}**: {e['explanation']}"
                + (f' — transcript: "{e["transcript"]}"' if e.get("transcript") else "")
                + (f" — flags: {'; '.join(e['flags'])}" if e.get("flags") else "")
            )
        lines.append("")
    lines += ["## MERR-style captions (builder output)", ""]
    for name, text in s["merr_examples"].items():
        lines.append(f"- `{name}`: {text}")
    av = s["merr_av"]
    lines += ["", f"With face cues, Actor_01's {av['n']} full audio-video takes:", ""]
    for name in list(av["coarse"])[:3]:
        lines.append(f"- `{name}` coarse: {av['coarse'][name]['caption']}")
        if name in av["fine"]:
            lines.append(f"  fine: {av['fine'][name]['smp_reason_caption']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
