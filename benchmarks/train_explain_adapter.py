"""Build the shipped explanation adapter of ``esva explain`` (esva/assets/explain_adapter).

    python benchmarks/train_explain_adapter.py [--work DIR] [--install]

1. **Measure** every clip of benchmarks/_explain_data.py (RAVDESS, TESS, EMOVO, ASED speakers +
   MEAD and Actor_01 videos; speakers never cross train / validation / test) exactly as
   ``esva explain`` does (:func:`esva.apps.explain.measure_clip`: the shipped recogniser's
   answer, the voice and face cues, the voice's Whisper tiny.en layer-2 frames and the face
   expert's distribution). Cached in ``WORK/measures`` (a killed run resumes).
2. **Train** SmolLM2-135M-Instruct + projectors + LoRA (r 8, q/v) for one epoch on two tasks:
   the class word from the clip alone (feature tokens + cue text, no recogniser answer), and
   reasoning sentences composed from the measured cues (true by construction, every one
   checked) after the recogniser's answer in the prompt ``esva explain`` uses. Seeded, one
   thread, fixed order.
3. **Choose** the LM weight of ``p_head · p_LM^w`` on the validation speakers (weighted F1, then
   NLL; w = 0 keeps the recogniser's label) and **score** head / LM / fused on the test speakers
   -> results/explain_adapter.md + .json.
4. **Write** the folder (adapter.json, feature_stats.safetensors, the EmotionLLM files), print
   each file's sha256 (record them in esva.assets.EXPLAIN_ADAPTER_SHA256); ``--install`` copies
   it into the package.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, markdown_table, require_shared
from _explain_data import all_items

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)
REASONING_SHARE = 0.25
SEED = 0


# ----------------------------------------------------------------------------- 1. measure


def measure_all(items, work: Path) -> dict[str, dict]:
    """{clip name: record} for every item, cached one JSON line + one npz per clip."""
    from rich.progress import track

    from esva.apps.explain import load_voice_reference, measure_clip
    from esva.apps.inference import Recognizer
    from esva.encoders import create_encoder

    out_dir = work / "measures"
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [it for it in items if not (out_dir / f"{it.name}.json").exists()]
    if todo:
        recognizer = Recognizer.from_pretrained()
        prosody = create_encoder("prosody")
        registers = load_voice_reference()
        for it in track(todo, description=f"measuring {len(todo)} clips"):
            m = measure_clip(recognizer, prosody, registers, it.path, it.audio)
            p = m.prediction
            np.savez(
                out_dir / f"{it.name}.npz",
                **{
                    # the projector mean-pools one token per stream: the mean frame is exact
                    k: v.mean(axis=0, keepdims=True).astype(np.float32)
                    for k, v in m.features.items()
                },
            )
            record = {
                "label": it.label,
                "head": p.probabilities,
                "head_label": p.label,
                "cues": m.cues.to_dict(),
                "flags": p.flags,
            }
            tmp = out_dir / f"{it.name}.json.tmp"
            tmp.write_text(json.dumps(record), encoding="utf-8")
            tmp.replace(out_dir / f"{it.name}.json")
    records = {}
    for it in items:
        rec = json.loads((out_dir / f"{it.name}.json").read_text(encoding="utf-8"))
        with np.load(out_dir / f"{it.name}.npz") as z:
            rec["features"] = {k: z[k] for k in z.files}
        records[it.name] = rec
    return records


def cue_set(raw: dict):
    from esva.llm.cues import ClipCueSet, FaceTrackCue, VoiceCue

    face = FaceTrackCue(**raw["face"]) if raw.get("face") else None
    return ClipCueSet(
        voice=[VoiceCue(**c) for c in raw.get("voice") or []],
        voice_reference=raw.get("voice_reference"),
        face=face,
        transcript=None,
    )


# ----------------------------------------------------------------------------- 2. train


def feature_stats(records, names) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from esva.llm.adapter import STREAM_DIMS

    stats = {}
    for stream in STREAM_DIMS:
        rows = [
            records[n]["features"][stream][0] for n in names if stream in records[n]["features"]
        ]
        x = np.stack(rows).astype(np.float64)
        stats[stream] = (
            x.mean(axis=0).astype(np.float32),
            np.maximum(x.std(axis=0), 1e-3).astype(np.float32),
        )
    return stats


def build_samples(records, names, classes, rng: random.Random):
    """(kind, name, prompt, target, use_features) per training sample, in a seeded order."""
    from esva.llm.adapter import reasoning_target, recognition_prompt
    from esva.llm.conclude import lead_words, prompt_messages

    samples = []
    for n in names:
        rec = records[n]
        cues = cue_set(rec["cues"])
        streams = sorted(rec["features"])
        if streams:
            prompt = recognition_prompt(streams, cues, classes)
            samples.append(("+".join(streams), n, prompt, rec["label"], True))
        if rng.random() < REASONING_SHARE and (cues.voice or cues.face is not None):
            mods = ("voice", "face", "words")
            label = rec["head_label"]
            user = prompt_messages(cues, label, rec["head"], "reason", mods)[1]["content"]
            lead = lead_words(cues, mods)
            sentences = reasoning_target(cues, lead, mods, rng)
            # The conclusion is not in the target: esva explain force-decodes it after the
            # reasoning, so the LM learns to stop (end of turn) once the cues are said.
            target = " ".join(sentences)
            samples.append(("reason", n, user, target, False))
    rng.shuffle(samples)
    return samples


def batches(samples, size: int):
    """Batches of one kind each (same streams in every prompt), in the samples' order."""
    open_: dict[str, list] = {}
    for s in samples:
        group = open_.setdefault(s[0], [])
        group.append(s)
        if len(group) == size:
            yield open_.pop(s[0])
    yield from (g for g in open_.values() if g)


def to_features(records, names, stats):
    import torch

    from esva.llm.adapter import standardize

    per = [standardize(records[n]["features"], stats) for n in names]
    return {
        k: (torch.cat([p[k][0] for p in per]), torch.cat([p[k][1] for p in per])) for k in per[0]
    }


def train(records, names, classes, stats, args):
    import torch

    from esva.llm.adapter import STREAM_DIMS
    from esva.llm.conclude import SYSTEM
    from esva.llm.lora import LoraSettings
    from esva.llm.model import EmotionLLM, EmotionLLMConfig

    torch.manual_seed(SEED)
    config = EmotionLLMConfig(
        streams=dict(STREAM_DIMS),
        tokens=1,
        lora=LoraSettings(r=8, alpha=16, dropout=0.05),
        system_prompt=SYSTEM,
        max_length=512,
        max_new_tokens=48,
        autocast="bfloat16",  # training passes only (~1.6x faster here); reset before saving
    )
    model = EmotionLLM.build(config, download=False)
    samples = build_samples(records, names, classes, random.Random(SEED))
    kinds = Counter(s[0] for s in samples)
    print(f"{len(samples)} samples: {dict(kinds)}")
    lora = [p for n, p in model.named_parameters() if p.requires_grad and "lora" in n]
    proj = list(model.projector.parameters())
    opt = torch.optim.AdamW([{"params": lora, "lr": args.lr}, {"params": proj, "lr": 1e-3}])
    all_batches = list(batches(samples, args.batch))
    total = len(all_batches) * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: min(1.0, (step + 1) / 20) * max(0.0, 1 - step / total)
    )
    model.train()
    losses, t0, step = [], time.time(), 0
    for epoch in range(args.epochs):
        order = list(all_batches)
        random.Random(SEED + epoch).shuffle(order)
        for batch in order:
            names_b = [s[1] for s in batch]
            feats = to_features(records, names_b, stats) if batch[0][4] else {}
            out = model(feats, [s[2] for s in batch], [s[3] for s in batch])
            opt.zero_grad()
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(lora + proj, 1.0)
            opt.step()
            sched.step()
            losses.append(float(out.loss.detach()))
            step += 1
            if step % 20 == 0 or step == total:
                print(
                    f"step {step}/{total} loss {np.mean(losses[-20:]):.3f} "
                    f"({time.time() - t0:.0f} s)",
                    flush=True,
                )
    model.config.autocast = None  # esva explain runs the LM in float32 (faster to generate)
    return model.eval(), {"steps": step, "samples": len(samples), "kinds": dict(kinds),
                          "final_loss": float(np.mean(losses[-20:])),
                          "train_s": round(time.time() - t0, 1)}  # fmt: skip


# ----------------------------------------------------------------------------- 3. choose, score


def lm_opinions(model, records, names, classes, stats):
    """{name: LM distribution} from the clip alone (the recognition prompt)."""
    from rich.progress import track

    from esva.llm.adapter import class_logprobs, lm_distribution, recognition_prompt, standardize

    out = {}
    for n in track(names, description=f"LM second opinion on {len(names)} clips"):
        rec = records[n]
        if not rec["features"]:
            continue
        feats = standardize(rec["features"], stats)
        prompt = recognition_prompt(sorted(feats), cue_set(rec["cues"]), classes)
        out[n] = lm_distribution(class_logprobs(model, feats, prompt, classes))
    return out


def scores(records, names, lm, weight: float, classes) -> dict:
    from sklearn.metrics import f1_score

    from esva.llm.adapter import fuse_with_lm

    y, pred, nll = [], [], []
    for n in names:
        head = records[n]["head"]
        p = fuse_with_lm(head, lm[n], weight) if n in lm else head
        y.append(records[n]["label"])
        pred.append(max(p, key=p.get))
        nll.append(-np.log(max(p.get(records[n]["label"], 0.0), 1e-12)))
    return {
        "n": len(names),
        "weighted_f1": float(
            f1_score(y, pred, average="weighted", labels=classes, zero_division=0)
        ),
        "accuracy": float(np.mean([a == b for a, b in zip(y, pred, strict=True)])),
        "nll": float(np.mean(nll)),
    }


def lm_alone(records, names, lm, classes) -> dict:
    from sklearn.metrics import f1_score

    kept = [n for n in names if n in lm]
    y = [records[n]["label"] for n in kept]
    pred = [max(lm[n], key=lm[n].get) for n in kept]
    return {
        "n": len(kept),
        "weighted_f1": float(
            f1_score(y, pred, average="weighted", labels=classes, zero_division=0)
        ),
        "accuracy": float(np.mean([a == b for a, b in zip(y, pred, strict=True)])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/esva_explain_adapter"))
    ap.add_argument("--install", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--measure-only", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    shared = require_shared()
    items = all_items(shared)
    records = measure_all(items, args.work)
    if args.measure_only:
        return

    classes = list(records[items[0].name]["head"])
    split = {s: [it.name for it in items if it.split == s] for s in ("train", "val", "test")}
    stats = feature_stats(records, split["train"])
    model, info = train(records, split["train"], classes, stats, args)

    lm_val = lm_opinions(model, records, split["val"], classes, stats)
    chosen = {w: scores(records, split["val"], lm_val, w, classes) for w in WEIGHTS}
    best = max(WEIGHTS, key=lambda w: (round(chosen[w]["weighted_f1"], 4), -chosen[w]["nll"], -w))
    lm_test = lm_opinions(model, records, split["test"], classes, stats)
    by_corpus: dict[str, list[str]] = {}
    for it in items:
        if it.split == "test":
            by_corpus.setdefault(it.corpus, []).append(it.name)
    table = {}
    for corpus, names in [("all", split["test"]), *sorted(by_corpus.items())]:
        table[corpus] = {
            "head": scores(records, names, lm_test, 0.0, classes),
            "lm": lm_alone(records, names, lm_test, classes),
            "fused": scores(records, names, lm_test, best, classes),
        }
    from esva.llm.adapter import ADAPTER_FORMAT, save_adapter

    meta = {
        "format": ADAPTER_FORMAT,
        "classes": classes,
        "lm_weight": best,
        "streams": {"voice": "whisper-tiny layer 2 frames (the default recogniser's)",
                    "face": "face expert 8-class distribution, classes sorted by name"},
        "trained_on": {s: dict(Counter(it.corpus for it in items if it.split == s))
                       for s in ("train", "val", "test")},
        "training": info,
        "validation": {str(w): chosen[w] for w in WEIGHTS},
    }  # fmt: skip
    out = save_adapter(model, stats, meta, args.work / "adapter")
    report(table, chosen, best, meta, out, args)
    from esva.assets import EXPLAIN_ADAPTER_SHA256, explain_adapter_dir
    from esva.hashing import file_sha256

    files = sorted(p.name for p in out.iterdir() if p.is_file())
    hashes = {f: file_sha256(out / f) for f in files}
    for f, sha in hashes.items():
        same = "matches" if EXPLAIN_ADAPTER_SHA256.get(f) == sha else "DIFFERS from"
        print(f"{f}: {(out / f).stat().st_size / 1e6:.2f} MB sha256 {sha} ({same} the recorded)")
    print("EXPLAIN_ADAPTER_SHA256 = " + repr(hashes))
    if args.install:
        target = explain_adapter_dir(verify=False)
        target.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(out / f, target / f)
        print(f"installed into {target}; record the hashes in src/esva/assets/__init__.py")


def report(table, chosen, best, meta, out, args) -> None:
    rows = [
        [w, v["weighted_f1"], v["accuracy"], v["nll"], "chosen" if w == best else ""]
        for w, v in chosen.items()
    ]
    test_rows = [
        [corpus, t["head"]["n"], t["head"]["weighted_f1"], t["lm"]["weighted_f1"],
         t["fused"]["weighted_f1"], t["head"]["nll"], t["fused"]["nll"]]
        for corpus, t in table.items()
    ]  # fmt: skip
    info = meta["training"]
    text = "\n".join(
        [
            "# The explanation adapter: the LM as a second opinion",
            "",
            f"`python benchmarks/train_explain_adapter.py --threads {args.threads}`: "
            f"SmolLM2-135M-Instruct + projectors + LoRA (r 8, q/v), {info['samples']} samples "
            f"({info['kinds']}), {info['steps']} steps, {info['train_s']:.0f} s on the CPU, "
            f"final loss {info['final_loss']:.3f}. Clips per split and corpus: "
            f"{meta['trained_on']}.",
            "",
            "## Validation speakers: the LM's weight in p_head · p_LM^w",
            "",
            markdown_table(["w", "weighted F1", "accuracy", "NLL", ""], rows),
            "",
            f"Chosen w = {best} (weighted F1, then NLL).",
            "",
            "## Test speakers (never trained on, never used to choose)",
            "",
            markdown_table(
                [
                    "corpus",
                    "clips",
                    "head wF1",
                    "LM alone wF1",
                    f"fused (w={best}) wF1",
                    "head NLL",
                    "fused NLL",
                ],
                test_rows,
            ),
            "",
            "The head is the shipped recogniser (`esva predict`'s answer); the LM reads the "
            "clip's feature tokens and measured cues without that answer.",
            "",
        ]
    )
    (ROOT / "results" / "explain_adapter.md").write_text(text, encoding="utf-8")
    (ROOT / "results" / "explain_adapter.json").write_text(
        json.dumps({"test": table, "meta": meta}, indent=2), encoding="utf-8"
    )
    print(text)
    print(f"folder: {out}")


if __name__ == "__main__":
    main()
