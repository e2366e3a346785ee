"""Face-expression benchmark: esva's ``face-expert`` against the ``fer-cnn`` baseline.

    PYTHONPATH=src python benchmarks/faces.py            # -> results/faces.md, faces.json, PNGs

Measures, on one CPU thread:

* FER+ test accuracy (majority vote, unknown/not-a-face majorities dropped, 8 classes) for the
  face expert; fer-cnn on its 7 classes, scored on the test images whose majority is not
  contempt (it has no contempt output); the face expert on that same subset too;
* CK+48 accuracy (posed; a sanity check) for both (fer-cnn without the contempt folder);
* MEAD clip-level face-only accuracy (24 dev clips; the 21 clips of the 7 classes both models
  share) with expressive-frame pooling vs the mean, for several ``crop`` framings; RAVDESS
  Actor_01 video-only takes (neutral, sad, surprised) as a second dev set for the pooling rule;
* expected calibration error (15 bins, top label) on FER+ test before/after temperature;
* per-frame CPU latency of ``encode`` on a 90-frame track.

Face tracks of the dev clips are cached under ``runs/faces_cache/`` (Haar, grey, margin 0.3 so
that tighter and looser framings can be cut from one track). ``--update-config`` writes the
measured scores into ``src/esva/assets/face_expert/config.json`` (then record its new sha256).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import markdown_table, require_shared  # noqa: E402
from esva.encoders import face_expert as fe  # noqa: E402
from esva.encoders import fer_cnn as fc  # noqa: E402
from esva.io import atomic_path, write_json  # noqa: E402
from train_face_expert import load_split, majority  # noqa: E402

CACHE = ROOT / "runs" / "faces_cache"
RESULTS = ROOT / "results"
TRACK_MARGIN = 0.3  # cached tracks: Haar box grown 30 % a side (side = 1.6 x the Haar box)
DEFAULT_MARGIN = 0.1  # esva's tracker default (side = 1.2 x the Haar box)
TRACK_SIZE = 128
MEAD_MAP = {
    "angry": "anger",
    "contempt": "contempt",
    "disgusted": "disgust",
    "fear": "fear",
    "happy": "happiness",
    "neutral": "neutral",
    "sad": "sadness",
    "surprised": "surprise",
}
FER_TO_PLUS = {  # fer-cnn label -> FER+ class
    "angry": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happiness",
    "sad": "sadness",
    "surprise": "surprise",
    "neutral": "neutral",
}
FER_IDX = [fe.CLASSES.index(FER_TO_PLUS[c]) for c in fc.LABELS]  # fer-cnn column -> FER+ index
CK_MAP = {
    "anger": "anger",
    "contempt": "contempt",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happiness",
    "sadness": "sadness",
    "surprise": "surprise",
}
RAVDESS_EMO = {"01": "neutral", "02": "neutral", "04": "sadness", "08": "surprise"}  # calm->neutral
SHARED7 = [c for c in fe.CLASSES if c != "contempt"]
# Clip pooling rules compared on the dev clips: confidence weights (fe.pool_clip's rule) and
# weights from the distance to neutral, softmax(1 - p(neutral) / tau) (rejected: see faces.md).
RULES = ("mean", "conf^1", "conf^2", "conf^4", "neutral-dist tau 0.3", "neutral-dist tau 0.1")
CHOSEN = f"conf^{fe.POOL_POWER:g}"


def pool_rule(rule: str, probs: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, float]:
    """``(pooled probabilities (8,), peak frame time)`` of one clip under a pooling rule."""
    if rule == "mean" or rule.startswith("conf^"):
        power = 0.0 if rule == "mean" else float(rule[5:])
        pooled = fe.pool_clip(probs, times, power=power)
        return pooled.probabilities.copy(), pooled.peak_time_s
    tau = float(rule.rsplit(" ", 1)[1])
    expr = 1.0 - probs[:, fe.CLASSES.index("neutral")]
    w = np.exp((expr - expr.max()) / tau)
    pooled = (w[:, None] * probs).sum(0) / w.sum()
    return pooled, float(times[int(np.argmax(expr))])


# --------------------------------------------------------------------------------------------
def softmax(x: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(np.asarray(x, np.float32)), -1).numpy()


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top label (esva.evaluate.classification)."""
    from esva.evaluate.classification import expected_calibration_error

    return expected_calibration_error(probs, labels, bins)


def expert_logits(enc: fe.FaceExpertEncoder, faces: np.ndarray, crop: float = 1.0) -> np.ndarray:
    """Calibrated logits (N, 8) of grey uint8 faces (N, S, S)."""
    return enc.forward_faces(fe.preprocess_faces(faces, crop))[1]


def fer_logits(enc: fc.FerCnnEncoder, faces: np.ndarray) -> np.ndarray:
    return enc.forward_faces(fc.preprocess_faces(faces[..., None] if faces.ndim == 3 else faces))[1]


def to_plus(fer_probs: np.ndarray) -> np.ndarray:
    """fer-cnn probabilities (N, 7) -> FER+ class order (N, 8), contempt 0."""
    out = np.zeros((len(fer_probs), len(fe.CLASSES)))
    out[:, FER_IDX] = fer_probs
    return out


# --------------------------------------------------------------------------------------------
def load_ck(shared: Path) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    images, labels = [], []
    for folder in sorted((shared / "face_images" / "CK+48").iterdir()):
        for png in sorted(folder.glob("*.png")):
            img = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
            images.append(cv2.resize(img, (48, 48)) if img.shape != (48, 48) else img)
            labels.append(fe.CLASSES.index(CK_MAP[folder.name]))
    return np.stack(images), np.asarray(labels)


def dev_clips(shared: Path) -> list[tuple[str, str, Path]]:
    """(set, label, path) of the MEAD clips and the RAVDESS Actor_01 video-only takes."""
    clips = []
    for p in sorted((shared / "mead_faces").glob("*.mp4")):
        emo = re.match(r"[A-Z]\d+_front_([a-z]+)_level\d_\d+", p.stem).group(1)
        clips.append(("mead", MEAD_MAP[emo], p))
    for p in sorted((shared / "ravdess_av" / "Actor_01").glob("02-01-*.mp4")):
        emo = p.stem.split("-")[2]
        if emo in RAVDESS_EMO:
            clips.append(("ravdess", RAVDESS_EMO[emo], p))
    return clips


def cached_track(path: Path) -> dict[str, np.ndarray]:
    """Haar track of ``path`` at 25 fps, grey 128 px crops with margin 0.3, cached as .npz."""
    from esva.media.decode import iter_frames
    from esva.media.faces import FaceTrackerConfig, track_faces

    out = CACHE / f"{path.stem}.npz"
    if out.is_file():
        with np.load(out) as z:
            return dict(z)
    cfg = FaceTrackerConfig(detector="haar", size=TRACK_SIZE, grey=True, margin=TRACK_MARGIN)
    track = track_faces(iter_frames(path, fps=25), cfg, source=path)
    arrays = {"crops": track.crops[..., 0], "t": track.timestamps_s, "mask": track.mask}
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return arrays


def framed(crops: np.ndarray, crop: float) -> np.ndarray:
    """Cut a framing from the margin-0.3 crops: ``crop`` is relative to esva's default crop
    (1.0 = the tracker's default margin-0.1 box; > 1 looser than the default can give)."""
    share = crop * (1 + 2 * DEFAULT_MARGIN) / (1 + 2 * TRACK_MARGIN)
    side = crops.shape[1]
    keep = round(side * share)
    o = (side - keep) // 2
    return crops[:, o : o + keep, o : o + keep]


# --------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--update-config", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    shared = require_shared()
    RESULTS.mkdir(exist_ok=True)
    expert = fe.FaceExpertEncoder()
    crop_default = expert.config.crop
    base = fc.FerCnnEncoder()
    T = expert.temperature
    res: dict = {"temperature": T}

    # ---- FER+ test ----
    imgs, votes, _ = load_split("test")
    keep, label = majority(votes)
    imgs, label = imgs[keep], label[keep]
    lg = expert_logits(expert, imgs)  # FER+ faces are already FER-framed: no extra crop
    p_cal, p_raw = softmax(lg), softmax(lg * T)
    pred = p_cal.argmax(1)
    not_contempt = label != fe.CLASSES.index("contempt")
    p_fer = to_plus(softmax(fer_logits(base, imgs)))
    pred_fer = p_fer.argmax(1)
    res["ferplus_test"] = {
        "n": len(label),
        "face_expert_acc": float((pred == label).mean()),
        "n_no_contempt": int(not_contempt.sum()),
        "face_expert_acc_no_contempt": float((pred == label)[not_contempt].mean()),
        "fer_cnn_acc_no_contempt": float((pred_fer == label)[not_contempt].mean()),
        "ece_before": ece(p_raw, label),
        "ece_after": ece(p_cal, label),
        "fer_cnn_ece_no_contempt": ece(p_fer[not_contempt], label[not_contempt]),
        "nll_before": float(-np.log(p_raw[np.arange(len(label)), label] + 1e-12).mean()),
        "nll_after": float(-np.log(p_cal[np.arange(len(label)), label] + 1e-12).mean()),
    }
    from esva.evaluate.confusion import plot_confusion

    names = np.asarray(fe.CLASSES)
    plot_confusion(
        names[label],
        names[pred],
        fe.CLASSES,
        RESULTS / "faces_ferplus_confusion.png",
        "face-expert, FER+ test (majority vote)",
    )
    plot_confusion(
        names[label[not_contempt]],
        names[pred_fer[not_contempt]],
        SHARED7,
        RESULTS / "faces_ferplus_confusion_fer_cnn.png",
        "fer-cnn, FER+ test without contempt",
    )

    # ---- CK+48 ----
    ck, ck_y = load_ck(shared)
    ck_pred = softmax(expert_logits(expert, ck)).argmax(1)
    ck_nc = ck_y != fe.CLASSES.index("contempt")
    ck_fer = to_plus(softmax(fer_logits(base, ck))).argmax(1)
    res["ck48"] = {
        "n": len(ck_y),
        "face_expert_acc": float((ck_pred == ck_y).mean()),
        "face_expert_acc_no_contempt": float((ck_pred == ck_y)[ck_nc].mean()),
        "fer_cnn_acc_no_contempt": float((ck_fer == ck_y)[ck_nc].mean()),
        "n_no_contempt": int(ck_nc.sum()),
    }

    # ---- dev clips: framing and pooling ----
    clips = dev_clips(shared)
    tracks = {p.stem: cached_track(p) for _, _, p in clips}
    crops_grid = (0.8, 0.9, 1.0, 1.1, 1.2)
    taus = RULES
    grid = []
    frame_probs: dict = {}
    for crop in crops_grid:
        for _, _, p in clips:
            tr = tracks[p.stem]
            frames = framed(tr["crops"][tr["mask"]], crop)
            frame_probs[(crop, p.stem)] = softmax(expert_logits(expert, frames))
    fer_probs = {}
    for _, _, p in clips:
        tr = tracks[p.stem]
        fer_probs[p.stem] = to_plus(softmax(fer_logits(base, framed(tr["crops"][tr["mask"]], 1.0))))

    def clip_scores(probs_of, tau, subset: str, restrict7: bool) -> tuple[int, int, list]:
        hits, total, rows = 0, 0, []
        for s, lab, p in clips:
            if s != subset or (restrict7 and lab == "contempt"):
                continue
            tr = tracks[p.stem]
            pr, peak_s = pool_rule(tau, probs_of(p.stem), tr["t"][tr["mask"]])
            if restrict7:
                pr[fe.CLASSES.index("contempt")] = 0.0
            guess = fe.CLASSES[int(pr.argmax())]
            hits += guess == lab
            total += 1
            rows.append((p.stem, lab, guess, peak_s))
        return hits, total, rows

    for crop in crops_grid:
        for tau in taus:
            row = {"crop": crop, "tau": tau}
            for subset, r7 in (("mead", True), ("mead", False), ("ravdess", False)):
                h, n, _ = clip_scores(lambda s, c=crop: frame_probs[(c, s)], tau, subset, r7)
                row[f"{subset}{'7' if r7 else ''}"] = f"{h}/{n}"
                row[f"{subset}{'7' if r7 else ''}_acc"] = h / max(n, 1)
            mean_conf = float(
                np.mean(
                    [frame_probs[(crop, p.stem)].max(1).mean() for s, _, p in clips if s == "mead"]
                )
            )
            row["mead_mean_top_prob"] = mean_conf
            grid.append(row)
    res["dev_grid"] = grid
    fer_rows = {}
    for tau in ("mean", CHOSEN):
        h, n, rows = clip_scores(lambda s: fer_probs[s], tau, "mead", True)
        fer_rows[str(tau)] = {"hits": h, "n": n, "rows": rows}
        hr, nr, _ = clip_scores(lambda s: fer_probs[s], tau, "ravdess", False)
        fer_rows[str(tau)]["ravdess"] = f"{hr}/{nr}"
    res["mead_fer_cnn"] = fer_rows
    chosen = {}
    for tau in ("mean", CHOSEN):
        h7, n7, _ = clip_scores(lambda s: frame_probs[(crop_default, s)], tau, "mead", True)
        h8, n8, rows8 = clip_scores(lambda s: frame_probs[(crop_default, s)], tau, "mead", False)
        hr, nr, _ = clip_scores(lambda s: frame_probs[(crop_default, s)], tau, "ravdess", False)
        chosen[str(tau)] = {
            "mead7": f"{h7}/{n7}",
            "mead7_acc": h7 / n7,
            "mead8": f"{h8}/{n8}",
            "mead8_acc": h8 / n8,
            "ravdess": f"{hr}/{nr}",
            "rows": rows8,
        }
    res["mead_face_expert"] = chosen

    # ---- latency: encode() on a 90-frame 64x64 grey track (3 s at 30 fps) ----
    from esva.media.types import FaceTrack

    mead0 = tracks[clips[0][2].stem]
    import cv2

    faces90 = framed(mead0["crops"][mead0["mask"]][:90], 1.0)
    crops64 = np.stack([cv2.resize(c, (64, 64), interpolation=cv2.INTER_AREA) for c in faces90])
    crops64 = crops64[..., None]
    track = FaceTrack(
        crops=crops64, timestamps_s=np.arange(len(crops64)) / 30.0, mask=np.ones(len(crops64), bool)
    )
    lat = {}
    for name, enc in (("face-expert", expert), ("fer-cnn", base)):
        enc.encode(track)
        t0 = time.perf_counter()
        for _ in range(5):
            enc.encode(track)
        lat[name] = (time.perf_counter() - t0) / 5 / len(crops64) * 1000
        one = FaceTrack(crops=crops64[:1], timestamps_s=np.zeros(1), mask=np.ones(1, bool))
        t0 = time.perf_counter()
        for _ in range(20):
            enc.encode(one)
        lat[name + " (1 frame)"] = (time.perf_counter() - t0) / 20 * 1000
    res["latency_ms_per_frame"] = lat
    write_json(RESULTS / "faces.json", res)
    report(res, crop_default)
    if args.update_config:
        cfg_path = fe.ASSET_DIR / "config.json"
        cfg = json.loads(cfg_path.read_text())
        ft, ck_r = res["ferplus_test"], res["ck48"]
        ch = res["mead_face_expert"][CHOSEN]
        cfg["scores"].update(
            {
                "ferplus_test_accuracy": round(ft["face_expert_acc"], 4),
                "ferplus_test_ece_before_temperature": round(ft["ece_before"], 4),
                "ferplus_test_ece_after_temperature": round(ft["ece_after"], 4),
                "ck48_accuracy": round(ck_r["face_expert_acc"], 4),
                "mead_clip_accuracy_7_shared_classes": ch["mead7"],
                "mead_clip_accuracy_8_classes": ch["mead8"],
                "command": "python benchmarks/faces.py --update-config",
            }
        )
        cfg["preprocessing"] = {"crop": crop_default, "pool_power": fe.POOL_POWER}
        write_json(cfg_path, cfg)
        from esva.hashing import file_sha256

        print(f"config.json sha256 {file_sha256(cfg_path)}")


NOTES = """Notes:
- fer-cnn has no contempt output, so its FER+ and CK+48 scores leave out the images whose label
  is contempt (28 of FER+ test, 54 of CK+48); the face expert is also scored on that subset.
- MEAD (24 clips) and RAVDESS Actor_01 (11 video-only takes; calm counted as neutral) are dev
  data: the framing (`crop`) and the pooling rule were chosen on them, so their scores are
  optimistic. MEAD's 7-class score drops contempt clips and the contempt output.
- Framing: esva's tracker crop (Haar box + 10 % a side) already matches FER2013's tight framing:
  crops 0.8-1.1 of it give the same MEAD score and the highest mean top-class probability;
  looser crops (1.2, with more hair/background) are worse. crop stays 1.0 (no extra cut).
- Pooling: weighting frames by distance from neutral loses MEAD clips (neutral, talking faces
  get 'surprise'/'happiness' from open-mouth frames); confidence weighting ties the mean and
  still points the peak-frame time at the frame that shows the clip's label most."""


def report(res: dict, crop_default: float) -> None:
    ft, ck = res["ferplus_test"], res["ck48"]
    me, fr = res["mead_face_expert"], res["mead_fer_cnn"]
    tau = CHOSEN
    rows = [
        [f"FER+ test accuracy, 8 classes (n={ft['n']})", f"{ft['face_expert_acc']:.3f}", "-"],
        [
            f"FER+ test accuracy, no-contempt subset (n={ft['n_no_contempt']})",
            f"{ft['face_expert_acc_no_contempt']:.3f}",
            f"{ft['fer_cnn_acc_no_contempt']:.3f}",
        ],
        [
            "FER+ test ECE, raw logits",
            f"{ft['ece_before']:.3f}",
            f"{ft['fer_cnn_ece_no_contempt']:.3f}",
        ],
        [f"FER+ test ECE, temperature {res['temperature']:.3f}", f"{ft['ece_after']:.3f}", "-"],
        [f"CK+48 accuracy, 7 folders (n={ck['n']})", f"{ck['face_expert_acc']:.3f}", "-"],
        [
            f"CK+48 accuracy, no contempt (n={ck['n_no_contempt']})",
            f"{ck['face_expert_acc_no_contempt']:.3f}",
            f"{ck['fer_cnn_acc_no_contempt']:.3f}",
        ],
        [
            "MEAD clips, 7 shared classes, mean pooling",
            me["mean"]["mead7"],
            f"{fr['mean']['hits']}/{fr['mean']['n']}",
        ],
        [
            f"MEAD clips, 7 shared classes, confidence pooling ({tau})",
            me[tau]["mead7"],
            f"{fr[tau]['hits']}/{fr[tau]['n']}",
        ],
        [f"MEAD clips, 8 classes, confidence pooling ({tau})", me[tau]["mead8"], "-"],
        [
            "RAVDESS Actor_01 takes (neutral/calm, sad, surprised), mean",
            me["mean"]["ravdess"],
            fr["mean"]["ravdess"],
        ],
        [
            f"RAVDESS Actor_01 takes, confidence pooling ({tau})",
            me[tau]["ravdess"],
            fr[tau]["ravdess"],
        ],
    ]
    lat = res["latency_ms_per_frame"]
    rows.append(
        [
            "CPU ms/frame, 90-frame track (1 frame alone)",
            f"{lat['face-expert']:.2f} ({lat['face-expert (1 frame)']:.1f})",
            f"{lat['fer-cnn']:.2f} ({lat['fer-cnn (1 frame)']:.1f})",
        ]
    )
    table = markdown_table(["measure", "face-expert", "fer-cnn"], rows)
    mead7 = me[tau]["mead7_acc"]
    goals = (
        "Goals: FER+ test accuracy >= 0.84: "
        f"{'met' if ft['face_expert_acc'] >= 0.84 else 'NOT met'} ({ft['face_expert_acc']:.3f}); "
        f"MEAD face-only >= 0.75 on the 7 shared classes: "
        f"{'met' if mead7 >= 0.75 else 'NOT met'} ({mead7:.3f}); "
        f"ECE <= 0.10: {'met' if ft['ece_after'] <= 0.10 else 'NOT met'} ({ft['ece_after']:.3f})."
    )
    grid = markdown_table(
        ["crop", "pooling", "MEAD 7-class", "MEAD 8-class", "RAVDESS", "MEAD mean top prob"],
        [
            [
                g["crop"],
                g["tau"],
                g["mead7"],
                g["mead"],
                g["ravdess"],
                f"{g['mead_mean_top_prob']:.3f}",
            ]
            for g in res["dev_grid"]
        ],
    )
    per_clip = markdown_table(
        ["MEAD clip", "label", "face-expert (pooled)", "peak frame s"],
        [[r[0], r[1], r[2], f"{r[3]:.2f}"] for r in me[tau]["rows"]],
    )
    text = (
        "# Face expert (FER+) vs fer-cnn\n\n"
        "Produced by `PYTHONPATH=src python benchmarks/faces.py` (one CPU thread).\n\n"
        f"face-expert framing: crop={crop_default} of the tracker's crop; pooling {tau}.\n\n"
        f"{table}\n\n{goals}\n\n{NOTES}\n\n"
        "## Dev grid (framing x pooling; MEAD and RAVDESS are dev data)\n\n"
        "crop is relative to esva's tracker default crop (Haar box + 10 % a side); > 1 is looser "
        "than the default tracker crop can give.\n\n"
        f"{grid}\n\n## MEAD per clip (chosen settings)\n\n{per_clip}\n"
    )
    with atomic_path(RESULTS / "faces.md") as tmp:
        tmp.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
