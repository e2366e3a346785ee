"""Dev procedure for the shipped fusion (voice model + face expert): choose its few parameters.

    python benchmarks/fusion_dev.py            # needs ../shared/data -> results/fusion_dev.md
    python benchmarks/fusion_dev.py --install  # ... and writes the chosen fusion.json into
                                               # src/esva/assets/default_model (prints sha256)

Free parameters (``esva.fusion.reliability``): the face's base weight ``alpha`` (the voice gets
``1 - alpha``) and the confidence power ``gamma``. ``speech_full`` (the active-speech share
counted as full voice presence) is not fitted on labels: it is the 25th percentile of the
energy-VAD speech share over the voice model's own training clips (RAVDESS speech, actors
02-20, every 5th clip), so a clip with as much speech as most training clips counts as fully
voiced. The face expert's temperature stays 1.0 (its logits are already divided by the
temperature fitted on FER+ valid). The voice model's temperature is not fitted here either: it
is :func:`voice_temperature`, the median of the temperatures that ``benchmarks/crosscorpus.py``
fitted for the shipped voice model on each leave-one-corpus-out fold's validation speakers
(``results/crosscorpus.json``; never on a held-out corpus). Trained on RAVDESS only, the model
is ~0.99 confident on speech it has never heard; that temperature is what brings its expected
calibration error on the unseen corpora down (results/crosscorpus.md).

Dev data (all from ``../shared/data``):

* RAVDESS Actor_01, 18 takes with sound and face: 7 full audio-video takes (``01-...mp4``) and
  11 video-only takes (``02-...mp4``) paired with their audio twins
  (``ravdess_speech/Actor_01/03-...flac``, as ``--audio``). Labels mapped to ser7
  (calm -> neutral). The shipped voice model was trained on all 20 actors, Actor_01 included,
  so its probabilities there are optimistic: the parameters are chosen with a voice model
  trained by the same recipe (``benchmarks/train_default_model.py``'s ``build``) on actors
  02-20 only (Actor_01 unseen); the shipped model's dev scores are reported beside, marked.
* MEAD (``mead_faces``, 24 silent frontal clips, 3 speakers x 8 emotions): the face-only path
  end to end (a silent video -> face-only answer), scored on the 21 clips whose label is in
  ser7 (contempt has no ser7 class; its 3 clips are listed).

Choice rule: the lowest mean negative log-likelihood of the true ser7 class over the 18 RAVDESS
takes (a proper score, smoother than accuracy on 18 clips), accuracy as the tie-break, then the
larger alpha (the face is the expert that did not see these speakers). Baselines measured in the
same run: voice alone, face alone, and the plain product of the two (alpha = 0.5, gamma = 0).
Every number is dev data: optimistic for the chosen rule.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, markdown_table, require_shared

ALPHAS = tuple(round(a, 2) for a in np.linspace(0.0, 1.0, 11))
GAMMAS = (0.0, 1.0, 2.0)
RAVDESS_CODES = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
MEAD_SER7 = {
    "angry": "angry",
    "disgusted": "disgust",
    "fear": "fearful",
    "happy": "happy",
    "neutral": "neutral",
    "sad": "sad",
    "surprised": "surprised",
    "contempt": None,
}
WORK = ROOT / "runs" / "fusion_dev"
HELDOUT = "held-out (Actor_01 left out)"
SHIPPED = "shipped (actors 01-20: saw Actor_01)"


# ----------------------------------------------------------------------------- voice model
def heldout_voice_model(shared: Path, workers: int = 1) -> Path:
    """The default recipe trained on RAVDESS speech actors 02-20 (Actor_01 unseen), cached."""
    model = WORK / "voice_no01" / "model"
    if (model / "model.safetensors").is_file():
        return model
    import train_default_model as tdm

    data = WORK / "ravdess_no01"
    data.mkdir(parents=True, exist_ok=True)
    for actor in sorted((shared / "ravdess_speech").glob("Actor_*")):
        link = data / actor.name
        if actor.name != "Actor_01" and not link.exists():
            link.symlink_to(actor.resolve(), target_is_directory=True)
    return tdm.build(data, WORK / "voice_no01", workers)


def speech_full_from_training(shared: Path) -> tuple[float, dict]:
    """25th percentile of the VAD speech share over every 5th training clip (actors 02-20)."""
    from esva.fusion.reliability import vad_frames
    from esva.media.decode import load_audio

    files = sorted(
        f for f in (shared / "ravdess_speech").glob("Actor_*/*.flac") if f.parent.name != "Actor_01"
    )[::5]
    shares = []
    for f in files:
        clip = load_audio(f)
        _, active = vad_frames(clip.samples, clip.sample_rate)
        shares.append(float(active.sum() * 0.010 / clip.duration_s))
    q = np.percentile(shares, [10, 25, 50, 75])
    return round(float(q[1]), 2), {
        "clips": len(files),
        "p10": float(q[0]),
        "p25": float(q[1]),
        "median": float(q[2]),
        "p75": float(q[3]),
    }


# ----------------------------------------------------------------------------- clips
def ravdess_takes(shared: Path) -> list[tuple[Path, Path | None, str]]:
    """(video, audio or None, ser7 label) for the 18 Actor_01 takes with a face and a voice."""
    from esva.data.label_mapping import SER7_MAPS

    out = []
    for video in sorted((shared / "ravdess_av" / "Actor_01").glob("*.mp4")):
        parts = video.stem.split("-")
        label = SER7_MAPS["ravdess"][RAVDESS_CODES[parts[2]]]
        audio = None
        if parts[0] == "02":  # video-only take: its audio twin
            audio = shared / "ravdess_speech" / "Actor_01" / ("03-" + "-".join(parts[1:]) + ".flac")
            if not audio.is_file():
                continue
        out.append((video, audio, label))
    return out


def run_clip(recognizer, video: Path, audio: Path | None, cache: Path) -> dict:
    """``predict`` one clip (cached as JSON): per-modality raw outputs and presences."""
    if cache.is_file():
        return json.loads(cache.read_text())
    t = time.perf_counter()
    pred = recognizer.predict(video, audio=audio).to_dict()
    keep = {
        k: pred[k] for k in ("label", "probabilities", "per_modality", "flags", "face_coverage")
    }
    keep["seconds"] = time.perf_counter() - t
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(keep))
    return keep


def experts_of(entry: dict, classes: list[str]):
    """ExpertOutputs (raw distributions, presence) from a cached per_modality block."""
    from esva.apps.fused import ExpertOutput

    experts = {}
    for name, m in (entry.get("per_modality") or {}).items():
        dist = m.get("raw") or m["probabilities"]
        experts[name] = ExpertOutput(list(dist), np.array(list(dist.values())), m["presence"])
    return experts


def fused_probs(spec, experts: dict) -> np.ndarray:
    from esva.apps.fused import fuse

    return fuse(spec, experts, []).probabilities


def shipped_voice() -> tuple[str, dict]:
    """The shipped voice model's type and its config.json (unverified: --install rewrites)."""
    from esva.assets import default_model_dir
    from esva.io import read_json

    config = read_json(default_model_dir(verify=False) / "config.json")
    return str(config.get("model_type", "esva")), config


def voice_temperature() -> float:
    """1.0 for the pooled voice model (its own temperature, fitted on out-of-corpus
    predictions, is inside it); for an ESVA voice model, the median of its per-fold temperatures
    in results/crosscorpus.json (each fitted on that fold's validation speakers)."""
    kind, _ = shipped_voice()
    path = ROOT / "results" / "crosscorpus.json"
    if kind == "pooled-voice" or not path.is_file():
        return 1.0
    folds = json.loads(path.read_text()).get("methods", {}).get("shipped", {})
    temps = [float(f["temperature"]) for f in folds.values() if "temperature" in f]
    return round(float(np.median(temps)), 3) if temps else 1.0


def confidence_threshold() -> float | None:
    """The pooled voice model's calibrated threshold (chosen by benchmarks/generalise.py on
    out-of-corpus predictions for its stated precision); None for other voice models."""
    _, config = shipped_voice()
    value = (config.get("training") or {}).get("confidence_threshold")
    return None if value is None else float(value)


def face_encoder() -> str:
    """The face expert the shipped fusion.json names (benchmarks/faces.py chooses it)."""
    from esva.assets import default_model_dir
    from esva.io import read_json

    fusion = read_json(default_model_dir(verify=False) / "fusion.json")
    return str(fusion["experts"]["face"]["encoder"])


VOICE_T = voice_temperature()


def spec_with(alpha: float, gamma: float, speech_full: float, only: str | None = None):
    from esva.fusion.spec import FusionSpec

    d = default_spec_dict(alpha, gamma, speech_full)
    if only is not None:
        d["experts"] = {only: d["experts"][only]}
    return FusionSpec.from_dict(d)


def default_spec_dict(alpha: float, gamma: float, speech_full: float) -> dict:
    from esva.labelsets import SER7_CLASSES

    return {
        "format": "esva-fusion/1",
        "classes": list(SER7_CLASSES),
        "experts": {
            "voice": {
                "temperature": VOICE_T,
                "base_weight": round(1.0 - alpha, 4),
                "source": "model",
            },
            "face": {
                "temperature": 1.0,
                "base_weight": round(alpha, 4),
                "encoder": face_encoder(),
            },
        },
        "confidence_power": gamma,
        "speech_full": speech_full,
        **(
            {}
            if confidence_threshold() is None
            else {"confidence_threshold": confidence_threshold()}
        ),
        "chosen_by": "benchmarks/fusion_dev.py -> results/fusion_dev.md",
    }


def score(spec, entries: list[dict], labels: list[str], only: str | None = None) -> dict:
    classes = list(spec.classes)
    nll, right = [], 0
    for entry, label in zip(entries, labels, strict=True):
        experts = experts_of(entry, classes)
        if only is not None:
            experts = {only: experts[only]} if only in experts else {}
        p = fused_probs(spec, experts) if experts else np.full(len(classes), 1 / len(classes))
        nll.append(-np.log(max(float(p[classes.index(label)]), 1e-12)))
        right += classes[int(np.argmax(p))] == label
    return {"nll": float(np.mean(nll)), "right": int(right), "n": len(labels)}


def fusion_cost(recognizer, files: dict[str, list[Path]], repeats: int = 3) -> list[list]:
    """CPU seconds per file in one process: the same voice model alone (no fusion.json) vs the
    fused default, alternated, after a warm-up; medians. What fusion adds per file."""
    from esva.apps.inference import Recognizer

    plain = Recognizer(recognizer.model, recognizer.extractor, recognizer.name)
    rows = []
    for kind, paths in files.items():
        plain.predict(paths[0]), recognizer.predict(paths[0])  # warm-up (lazy loads)
        cpu: dict[str, list[float]] = {"plain": [], "fused": []}
        for _ in range(repeats):
            for path in paths:
                for name, rec in (("plain", plain), ("fused", recognizer)):
                    t = time.process_time()
                    rec.predict(path)
                    cpu[name].append(time.process_time() - t)
        a, b = np.median(cpu["plain"]), np.median(cpu["fused"])
        rows.append([kind, len(paths), f"{a:.3f} s", f"{b:.3f} s", f"{b / a:.2f}x"])
    return rows


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help="write the chosen fusion.json")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "fusion_dev.md")
    args = parser.parse_args()
    shared = require_shared()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from esva.apps.inference import Recognizer
    from esva.io import atomic_write, write_json

    t0 = time.perf_counter()
    speech_full, vad_stats = speech_full_from_training(shared)
    print(f"[dev] speech_full = {speech_full} ({vad_stats})", flush=True)
    base_spec = spec_with(0.5, 0.0, speech_full)
    from esva.assets import default_model_dir

    # The shipped folder unverified: this script rewrites its fusion.json (--install).
    voices = {HELDOUT: heldout_voice_model(shared), SHIPPED: default_model_dir(verify=False)}
    takes = ravdess_takes(shared)
    labels = [label for _, _, label in takes]
    entries: dict[str, list[dict]] = {}
    for name, folder in voices.items():
        plain = Recognizer.from_pretrained(folder)
        rec = Recognizer(plain.model, plain.extractor, plain.name, fusion=base_spec)
        slug = ("heldout" if name == HELDOUT else "shipped") + f"-full{speech_full}"
        entries[name] = [
            run_clip(rec, v, a, WORK / "cache" / slug / f"{v.stem}.json") for v, a, _ in takes
        ]
        print(f"[dev] {name}: {len(takes)} RAVDESS takes done", flush=True)
    heldout = entries[HELDOUT]

    grid = []
    for gamma in GAMMAS:
        for alpha in ALPHAS:
            s = score(spec_with(alpha, gamma, speech_full), heldout, labels)
            grid.append({"alpha": alpha, "gamma": gamma, **s})
    best = min(grid, key=lambda r: (round(r["nll"], 4), -r["right"], -r["alpha"]))
    alpha, gamma = best["alpha"], best["gamma"]
    chosen = spec_with(alpha, gamma, speech_full)

    # MEAD: silent clips through the shipped default's face-only path (no voice).
    rec = Recognizer.from_pretrained(voices[SHIPPED])
    rec = Recognizer(rec.model, rec.extractor, rec.name, fusion=chosen)
    mead_rows, mead_right, mead_n = [], 0, 0
    for clip in sorted((shared / "mead_faces").glob("*.mp4")):
        emotion = clip.stem.split("_")[2]
        truth = MEAD_SER7[emotion]
        cache = WORK / "cache" / f"mead-full{speech_full}" / f"{clip.stem}.json"
        e = run_clip(rec, clip, None, cache)
        face = (e.get("per_modality") or {}).get("face", {})
        face_only = any(f.startswith("face-only") for f in e["flags"])
        if truth is not None:
            mead_n += 1
            mead_right += e["label"] == truth
        mead_rows.append(
            [clip.stem, emotion, truth or "(none: contempt)", e["label"],
             "yes" if face_only else "NO", f"{face.get('coverage', 0):.2f}",
             f"{face.get('peak_time_s', 0):.2f}"]
        )  # fmt: skip

    cost = fusion_cost(
        rec,
        {
            "video (RAVDESS Actor_01, ~3.5 s)": [v for v, a, _ in takes if a is None][:4],
            "audio (RAVDESS speech, ~3.5 s)": sorted(
                (shared / "ravdess_speech" / "Actor_02").glob("*.flac")
            )[:4],
        },
    )
    rows = []
    for name, ents in entries.items():
        for label, spec, only in (
            ("voice alone", spec_with(0.0, 0.0, speech_full, "voice"), "voice"),
            ("face alone", spec_with(1.0, 0.0, speech_full, "face"), "face"),
            ("product (alpha 0.5, gamma 0)", spec_with(0.5, 0.0, speech_full), None),
            (f"chosen (alpha {alpha}, gamma {gamma:g})", chosen, None),
        ):
            s = score(spec, ents, labels, only)
            rows.append([name, label, f"{s['right']}/{s['n']}", f"{s['nll']:.3f}"])
    grid_rows = [
        [r["alpha"], f"{r['gamma']:g}", f"{r['right']}/{r['n']}", f"{r['nll']:.3f}"] for r in grid
    ]
    per_take = []
    for (video, audio, label), e, es in zip(takes, heldout, entries[SHIPPED], strict=True):
        ex = experts_of(e, list(chosen.classes))
        p = fused_probs(chosen, ex)
        pm = e["per_modality"]
        per_take.append(
            [video.name + (" +audio twin" if audio else ""), label,
             pm.get("voice", {}).get("label", "-"), pm.get("face", {}).get("label", "-"),
             list(chosen.classes)[int(np.argmax(p))], es["per_modality"]["voice"]["label"],
             f"{pm.get('voice', {}).get('presence', 0):.2f}",
             f"{pm.get('face', {}).get('presence', 0):.2f}"]
        )  # fmt: skip
    speed = np.median([e["seconds"] for e in heldout])
    face_neutral = sum(e["per_modality"]["face"]["label"] == "neutral" for e in heldout)
    changed = [
        f"{r[0]} (truth {r[1]}: voice {r[2]} -> fused {r[4]})" for r in per_take if r[2] != r[4]
    ]
    elapsed = time.perf_counter() - t0
    pooled = shipped_voice()[0] == "pooled-voice"
    voice_t_note = (
        "the pooled voice model's own temperature, fitted on out-of-corpus predictions by "
        "benchmarks/generalise.py, is inside it"
        if pooled
        else "not chosen here: the median of the shipped voice model's per-fold validation "
        "temperatures in results/crosscorpus.json"
    )
    heldout_note = (
        "benchmarks/generalise.py --install: five corpora, RAVDESS Actor_01 left out"
        if pooled
        else "RAVDESS actors 02-20"
    )
    take_header = ["take", "truth", "voice", "face", "fused", "voice (shipped)",
                   "voice presence", "face presence"]  # fmt: skip
    mead_header = ["clip", "MEAD label", "ser7 truth", "answer", "flagged face-only",
                   "coverage", "peak face s"]  # fmt: skip
    text = f"""# Fusion dev: voice model + face expert (reliability-weighted log-linear pool)

Produced by `PYTHONPATH=src python benchmarks/fusion_dev.py` (one CPU thread, {elapsed:.0f} s;
per-clip predictions are cached under `runs/fusion_dev/cache/`, the held-out voice model under
`runs/fusion_dev/voice_no01/`: about 20 min to build on 2 busy cores).
Rule and parameters: `esva.fusion.reliability` (module doc); settings shipped in
`src/esva/assets/default_model/fusion.json`.

**Chosen: alpha (face base weight) = {alpha}, gamma (confidence power) = {gamma:g},
speech_full = {speech_full}; voice temperature {VOICE_T} ({voice_t_note}).**
Chosen on the held-out voice model's 18 RAVDESS Actor_01 takes
by mean NLL of the true ser7 class (ties: accuracy, then the larger alpha).

speech_full = {speech_full}: the 25th percentile of the energy-VAD speech share over
{vad_stats["clips"]} RAVDESS training clips (actors 02-20; p10 {vad_stats["p10"]:.2f}, median
{vad_stats["median"]:.2f}, p75 {vad_stats["p75"]:.2f}): not fitted on labels.

## RAVDESS Actor_01, 18 takes with face and voice (dev; ser7, calm -> neutral)

The shipped voice model was trained on Actor_01: its rows are optimistic and were NOT used to
choose anything. The held-out voice model is the same recipe without Actor_01 ({heldout_note}).

{markdown_table(["voice model", "rule", "right", "mean NLL"], rows)}

Labels of these takes: {", ".join(f"{c} {labels.count(c)}" for c in sorted(set(labels)))}
(RAVDESS Actor_01 has video only for these emotions): a tiny, unbalanced dev set, and the face
expert reads this actor's face as neutral in {face_neutral} of the {len(labels)} takes, so here
the face acts mostly as a pull towards neutral: it lowers the NLL of the neutral takes, and the
fused label differs from the held-out voice's on {len(changed)} take(s):
{"; ".join(changed) or "none"}. The choice is a coarse one (the grid below shows how flat it
is); MEAD below is where the face expert's own skill shows.

## Grid (held-out voice model)

{markdown_table(["alpha", "gamma", "right", "mean NLL"], grid_rows)}

## Per take (chosen settings; held-out voice model unless marked)

{markdown_table(take_header, per_take)}

## MEAD silent clips: the face-only path (shipped default with the chosen settings)

Face-only answers on the 21 clips with a ser7 label: **{mead_right}/{mead_n}** (every clip
flagged face-only, exit 0). Face crops: the MTCNN sync track made for the audio-video offset
(every frame), not the Haar track of `benchmarks/faces.py` (its counts: `results/faces.md`).

{markdown_table(mead_header, mead_rows)}

Median time per RAVDESS take (predict, held-out model, in-process, one thread): {speed:.2f} s.

## What fusion costs per file (one process, one thread, CPU time, medians)

The shipped voice model alone (as a folder without fusion.json answers) against the fused
default, alternated on the same files after a warm-up: the face expert reads the crops of the
MTCNN track that the offset already needs (no second decode), every 3rd (detected) frame.

{markdown_table(["files", "n", "voice model alone", "fused default", "ratio"], cost)}
"""
    print(text)
    with atomic_write(args.out) as handle:
        handle.write(text)
    write_json(
        args.out.with_suffix(".json"),
        {"chosen": {"alpha": alpha, "gamma": gamma, "speech_full": speech_full},
         "vad": vad_stats, "grid": grid, "mead": {"right": mead_right, "n": mead_n}},
    )  # fmt: skip
    if args.install:
        from esva.hashing import file_sha256

        target = default_model_dir(verify=False) / "fusion.json"
        write_json(target, default_spec_dict(alpha, gamma, speech_full))
        print(f"wrote {target}; sha256 {file_sha256(target)} (record it in esva.assets)")


if __name__ == "__main__":
    main()
