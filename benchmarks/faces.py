"""Face-expression benchmark: ``face-expert``, ``fer-cnn`` and the transfer candidates.

    PYTHONPATH=src python benchmarks/faces.py            # -> results/faces.md, faces.json, PNGs
    PYTHONPATH=src python benchmarks/faces.py --extra-expert strong-aug=runs/fe_B   # + a retrain

The main table scores, side by side, today's face expert, fer-cnn, the expert with its training
prior removed, the expert pooled with fer-cnn, the shipped ``face-ensemble``
(esva.encoders.face_ensemble) and any retrained expert folder given with ``--extra-expert``
(alone and pooled with fer-cnn). The pool's expert weight and prior power are chosen here by one
rule on FER+ valid and the dev clips (never on CK+48); the module's constants must match.

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
from esva.data.ferplus import load_split as _load_split  # noqa: E402
from esva.data.ferplus import majority  # noqa: E402
from esva.encoders import face_ensemble as fens  # noqa: E402
from esva.encoders import face_expert as fe  # noqa: E402
from esva.encoders import fer_cnn as fc  # noqa: E402
from esva.io import atomic_path, write_json  # noqa: E402

CACHE = ROOT / "runs" / "faces_cache"
FERPLUS_CACHE = ROOT / "runs" / "ferplus_cache"  # decoded FER+ splits (esva.data.ferplus)
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
FER_IDX = list(fens.FER_CNN_INDEX)  # fer-cnn column -> FER+ index
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


def load_split(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images, votes, names)`` of a FER+ split of the shared data, cached under runs/."""
    return _load_split(require_shared() / "face_images" / "ferplus", split, FERPLUS_CACHE)


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
    ap.add_argument(
        "--extra-expert",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also score a retrained face-expert folder (alone and pooled with fer-cnn)",
    )
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

    # ---- transfer candidates: prior correction, pooling with fer-cnn, retrained experts ----
    res["candidates"] = candidates_section(expert, base, clips, tracks, ck, ck_y, args.extra_expert)

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
    ensemble = fens.FaceEnsembleEncoder()
    for name, enc in (("face-expert", expert), ("fer-cnn", base), ("face-ensemble", ensemble)):
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


# --------------------------------------------------------------------------------------------
# Transfer candidates (issue 17 item 4): prior correction and pooling with fer-cnn
# --------------------------------------------------------------------------------------------
# Expert weight in the log-linear pool with fer-cnn x prior power (the share of log(training
# prior) removed), chosen on FER+ valid and the dev clips only (never on CK+48).
W_GRID = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
TAU_GRID = (0.0, 0.25, 0.5, 0.6, 0.75, 0.9, 1.0)
SELECTION_RULE = (
    "maximise (MEAD 7-class + RAVDESS Actor_01 clips right) / 32 + FER+ valid balanced accuracy "
    "(mean of the per-class recalls); confidence pooling (conf^2); CK+48 is never looked at"
)


def expert_from(directory: Path) -> fe.FaceExpertEncoder:
    """A face-expert encoder on another weights folder (a retrained candidate; no hash check)."""
    enc = fe.FaceExpertEncoder(pretrained=False)
    state, cfg, _ = fe.load_asset(directory, verify=False)
    enc.net = fe.FaceExpertNet()
    enc.net.load_state_dict(state, strict=True)
    enc.net.fuse_batchnorm().to(memory_format=torch.channels_last)
    enc.temperature = float(cfg["temperature"])
    return enc


def balanced_accuracy(pred: np.ndarray, label: np.ndarray) -> float:
    return float(np.mean([(pred[label == c] == c).mean() for c in np.unique(label)]))


def fer_only_logits(f7: np.ndarray) -> np.ndarray:
    """fer-cnn's raw logits (N, 7) -> CLASSES order (N, 8), contempt impossible."""
    out = np.full((len(f7), len(fe.CLASSES)), -1e9, np.float32)
    out[:, FER_IDX] = f7
    return out


def candidates_section(expert, base, clips, tracks, ck, ck_y, extra: list[str]) -> dict:
    """Score today's expert, fer-cnn and the transfer candidates in one table (see faces.md)."""
    from esva.encoders.face_expert import fit_temperature

    data = {}
    for split in ("valid", "test"):
        imgs, votes, _ = load_split(split)
        keep, label = majority(votes)
        data[split] = (imgs[keep], label[keep])
    data["ck"] = (ck, ck_y)
    frames = {
        p.stem: framed(tracks[p.stem]["crops"][tracks[p.stem]["mask"]], 1.0) for _, _, p in clips
    }

    def logits_of(fn) -> dict:
        out = {k: fn(v[0]) for k, v in data.items()}
        out.update({stem: fn(f) for stem, f in frames.items()})
        return out

    experts = {"face-expert": logits_of(lambda x: expert_logits(expert, x))}
    fer = logits_of(lambda x: fer_logits(base, x))
    trained = {}
    for spec in extra:
        name, directory = spec.split("=", 1)
        enc = expert_from(Path(directory))
        cfg = json.loads((Path(directory) / "config.json").read_text())
        trained[name] = {
            "command": cfg["training"]["command"],
            "best_epoch": cfg["training"]["best_epoch"],
            "epochs": cfg["training"]["epochs"],
            "ferplus_valid_accuracy": cfg["scores"]["ferplus_valid_accuracy"],
        }
        experts[name] = logits_of(lambda x, e=enc: expert_logits(e, x))
    contempt = fe.CLASSES.index("contempt")
    vy = data["valid"][1]
    nc = vy != contempt
    fer_y = np.asarray([FER_IDX.index(int(y)) for y in vy[nc]])
    t_fer = fit_temperature(torch.from_numpy(fer["valid"][nc]), torch.from_numpy(fer_y))

    def pooled(ek: str | None, w: float, tau: float, t_out: float = 1.0):
        if ek is None:
            return lambda key: fer_only_logits(fer[key])
        return lambda key: fens.pool_logits(experts[ek][key], fer[key], w, tau, t_out)

    def clip_hits(get, subset: str, power: float, restrict7: bool) -> tuple[int, int, list]:
        hits, total, rows = 0, 0, []
        for s, lab, p in clips:
            if s != subset or (restrict7 and lab == "contempt"):
                continue
            pr = fe.pool_clip(softmax(get(p.stem)), power=power).probabilities.copy()
            if restrict7:
                pr[contempt] = 0.0
            guess = fe.CLASSES[int(pr.argmax())]
            hits += guess == lab
            total += 1
            rows.append((p.stem, lab, guess))
        return hits, total, rows

    def score(get, full: bool = True) -> dict:
        out = {}
        for split in ("valid", "test", "ck") if full else ("valid",):
            probs = softmax(get(split))
            label = data[split][1]
            pred = probs.argmax(1)
            keep = label != contempt
            out[split] = {
                "acc": float((pred == label).mean()),
                "acc_no_contempt": float((pred == label)[keep].mean()),
                "balanced": balanced_accuracy(pred, label),
                "ece": ece(probs, label),
            }
        for name, subset, power, r7 in (
            ("mead7", "mead", fe.POOL_POWER, True),
            ("mead7_mean", "mead", 0.0, True),
            ("mead8", "mead", fe.POOL_POWER, False),
            ("ravdess", "ravdess", fe.POOL_POWER, False),
            ("ravdess_mean", "ravdess", 0.0, False),
        ):
            h, n, rows = clip_hits(get, subset, power, r7)
            out[name] = {"hits": h, "n": n}
            if name == "mead8":
                out["mead_rows"] = rows
        return out

    grid, chosen = [], {}
    for ek in experts:
        best = None
        for w in W_GRID:
            for tau in TAU_GRID:
                sc = score(pooled(ek, w, tau), full=False)
                dev_hits = sc["mead7"]["hits"] + sc["ravdess"]["hits"]
                dev_n = sc["mead7"]["n"] + sc["ravdess"]["n"]
                objective = dev_hits / dev_n + sc["valid"]["balanced"]
                row = {
                    "expert": ek,
                    "w": w,
                    "tau": tau,
                    "valid_acc": sc["valid"]["acc"],
                    "valid_balanced": sc["valid"]["balanced"],
                    "mead7": f"{sc['mead7']['hits']}/{sc['mead7']['n']}",
                    "ravdess": f"{sc['ravdess']['hits']}/{sc['ravdess']['n']}",
                    "objective": objective,
                }
                grid.append(row)
                if best is None or objective > best["objective"] + 1e-12:
                    best = row
        chosen[ek] = best
    ship = chosen["face-expert"]
    # The output temperature of the shipped pool, fitted on FER+ valid (NLL).
    t_out = fit_temperature(
        torch.from_numpy(
            fens.pool_logits(
                experts["face-expert"]["valid"],
                fer["valid"],
                fens.EXPERT_WEIGHT,
                fens.PRIOR_POWER,
                output_temperature=1.0,
            )
        ),
        torch.from_numpy(vy),
    )
    w_pc = max(
        (r for r in grid if r["expert"] == "face-expert" and r["w"] == 1.0),
        key=lambda r: r["objective"],
    )
    cols = [
        ("face-expert (today)", pooled("face-expert", 1.0, 0.0)),
        ("fer-cnn", pooled(None, 0, 0)),
        (
            f"face-expert, prior-corrected (tau {w_pc['tau']:g})",
            pooled("face-expert", 1.0, w_pc["tau"]),
        ),
        (
            f"face-expert + fer-cnn (w {fens.EXPERT_WEIGHT:g}), no prior correction",
            pooled("face-expert", fens.EXPERT_WEIGHT, 0.0),
        ),
        (
            "**face-ensemble** (shipped)",
            pooled("face-expert", fens.EXPERT_WEIGHT, fens.PRIOR_POWER, fens.OUTPUT_TEMPERATURE),
        ),
    ]
    for ek in experts:
        if ek == "face-expert":
            continue
        c = chosen[ek]
        cols.append((f"{ek} (retrained)", pooled(ek, 1.0, 0.0)))
        cols.append(
            (f"{ek} + fer-cnn (w {c['w']:g}, tau {c['tau']:g})", pooled(ek, c["w"], c["tau"]))
        )
    table = {name: score(get) for name, get in cols}
    return {
        "fer_cnn_temperature_fitted": t_fer,
        "output_temperature_fitted": t_out,
        "module_constants": {
            "expert_weight": fens.EXPERT_WEIGHT,
            "prior_power": fens.PRIOR_POWER,
            "fer_cnn_temperature": fens.FER_CNN_TEMPERATURE,
            "output_temperature": fens.OUTPUT_TEMPERATURE,
        },
        "selection_rule": SELECTION_RULE,
        "retrained": trained,
        "chosen": chosen,
        "chosen_matches_module": bool(
            ship["w"] == fens.EXPERT_WEIGHT and ship["tau"] == fens.PRIOR_POWER
        ),
        "grid": grid,
        "table": table,
    }


def candidate_table(res: dict) -> str:
    """The main table: one column per candidate (today's expert and fer-cnn first)."""
    cand = res["candidates"]["table"]
    names = list(cand)
    ft, ck = res["ferplus_test"], res["ck48"]
    lat = res["latency_ms_per_frame"]

    def f3(v: float) -> str:
        return f"{v:.3f}"

    def hits(d: dict) -> str:
        return f"{d['hits']}/{d['n']}"

    def row(title: str, fn, fer_dash: bool = False) -> list:
        return [title] + [
            "-" if (fer_dash and name == "fer-cnn") else fn(cand[name]) for name in names
        ]

    def latency(name: str) -> str:
        key = {"face-expert (today)": "face-expert", "fer-cnn": "fer-cnn"}.get(name)
        key = key or ("face-ensemble" if "face-ensemble" in name else None)
        if key is None:
            return "-"
        return f"{lat[key]:.2f} ({lat[key + ' (1 frame)']:.1f})"

    rows = [
        row(f"FER+ test accuracy, 8 classes (n={ft['n']})", lambda c: f3(c["test"]["acc"]), True),
        row(
            f"FER+ test accuracy, no-contempt subset (n={ft['n_no_contempt']})",
            lambda c: f3(c["test"]["acc_no_contempt"]),
        ),
        row("FER+ test balanced accuracy (mean class recall)", lambda c: f3(c["test"]["balanced"])),
        row("FER+ test ECE (15 bins)", lambda c: f3(c["test"]["ece"])),
        row(
            "FER+ valid accuracy / balanced (selection data)",
            lambda c: f"{c['valid']['acc']:.3f} / {c['valid']['balanced']:.3f}",
        ),
        row(f"CK+48 accuracy, 7 folders (n={ck['n']})", lambda c: f3(c["ck"]["acc"]), True),
        row(
            f"**CK+48 accuracy, no contempt (n={ck['n_no_contempt']})**",
            lambda c: f3(c["ck"]["acc_no_contempt"]),
        ),
        row(
            f"**MEAD clips, 7 shared classes, conf^{fe.POOL_POWER:g} pooling**",
            lambda c: hits(c["mead7"]),
        ),
        row("MEAD clips, 7 shared classes, mean pooling", lambda c: hits(c["mead7_mean"])),
        row("MEAD clips, 8 classes, conf^2 pooling", lambda c: hits(c["mead8"]), True),
        row("RAVDESS Actor_01 takes, conf^2 pooling", lambda c: hits(c["ravdess"])),
        row("RAVDESS Actor_01 takes, mean pooling", lambda c: hits(c["ravdess_mean"])),
        ["CPU ms/frame, 90-frame track (1 frame alone)"] + [latency(n) for n in names],
    ]
    return markdown_table(["measure", *names], rows)


def report(res: dict, crop_default: float) -> None:
    ft = res["ferplus_test"]
    c = res["candidates"]
    shipped = c["table"]["**face-ensemble** (shipped)"]
    ck_s, mead_s = shipped["ck"]["acc_no_contempt"], shipped["mead7"]["hits"]
    goals = (
        "Goals (issue 17, item 4), for the shipped face-ensemble: CK+48 accuracy >= 0.75 "
        f"(never trained on; no-contempt subset): {'met' if ck_s >= 0.75 else 'NOT met'} "
        f"({ck_s:.3f}; 7 folders {shipped['ck']['acc']:.3f}); MEAD >= 16/21 (7 classes): "
        f"{'met' if mead_s >= 16 else 'NOT met'} ({mead_s}/{shipped['mead7']['n']})."
    )
    mc = c["module_constants"]
    chosen = c["chosen"]
    sel = "\n".join(
        f"- {ek}: chosen w {r['w']:g}, tau {r['tau']:g} (valid acc {r['valid_acc']:.3f}, "
        f"balanced {r['valid_balanced']:.3f}, MEAD {r['mead7']}, RAVDESS {r['ravdess']})"
        for ek, r in chosen.items()
    )
    grid = markdown_table(
        [
            "expert",
            "w (expert)",
            "tau (prior power)",
            "FER+ valid acc",
            "valid balanced",
            "MEAD 7-class",
            "RAVDESS",
            "objective",
        ],
        [
            [
                g["expert"],
                g["w"],
                g["tau"],
                f"{g['valid_acc']:.3f}",
                f"{g['valid_balanced']:.3f}",
                g["mead7"],
                g["ravdess"],
                f"**{g['objective']:.3f}**"
                if g is chosen.get(g["expert"])
                else f"{g['objective']:.3f}",
            ]
            for g in c["grid"]
        ],
    )
    dev_grid = markdown_table(
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
    cols = [n for n in c["table"] if n in ("face-expert (today)", "fer-cnn")] + [
        "**face-ensemble** (shipped)"
    ]
    per = {n: {r[0]: r[2] for r in c["table"][n]["mead_rows"]} for n in cols}
    base_rows = c["table"]["face-expert (today)"]["mead_rows"]
    per_clip = markdown_table(
        ["MEAD clip", "label", *[n.replace("**", "") for n in cols]],
        [[r[0], r[1], *[per[n][r[0]] for n in cols]] for r in base_rows],
    )
    command = " ".join(["PYTHONPATH=src python benchmarks/faces.py", *sys.argv[1:]])
    retrained = "".join(
        f"- Retrained candidate {name}: `PYTHONPATH=src {t['command']}` (best epoch "
        f"{t['best_epoch']} of {t['epochs']} by FER+ valid accuracy, {t['ferplus_valid_accuracy']}"
        "); weights under runs/ (not shipped).\n"
        for name, t in c["retrained"].items()
    )
    text = (
        "# Face experts: today's face-expert, fer-cnn and the transfer candidates\n\n"
        f"Produced by `{command}` (one CPU thread). Retrained candidates come from the "
        "`face-expert` recipe (`esva train --config configs/face_expert.yaml`, or "
        "`benchmarks/train_face_expert.py`; their commands are in the notes).\n\n"
        f"{candidate_table(res)}\n\n{goals}\n\n"
        "Notes:\n"
        '- **face-ensemble** = `create_encoder("face-ensemble")` (esva.encoders.face_ensemble): '
        "today's face-expert and fer-cnn, each with its training prior removed at power tau "
        "(logit adjustment), pooled log-linearly with weight w on the expert, then one output "
        f"temperature: w {mc['expert_weight']:g}, tau {mc['prior_power']:g}, fer-cnn temperature "
        f"{mc['fer_cnn_temperature']:g} (fitted here: {c['fer_cnn_temperature_fitted']:.4f}), "
        f"output temperature {mc['output_temperature']:g} (fitted here: "
        f"{c['output_temperature_fitted']:.4f}). The settings in the module "
        f"{'match' if c['chosen_matches_module'] else 'DIFFER from'} the grid's choice.\n"
        f"- Selection rule (w, tau): {c['selection_rule']}.\n{sel}\n{retrained}"
        "- Prior correction trades FER+ accuracy (FER+ test is 36 % neutral, like its train set) "
        "for balanced accuracy: disgust, fear and contempt are 0.6-2.3 % of FER+ train, so the "
        "uncorrected nets almost never say them (CK+48 disgust read as anger, anger as neutral).\n"
        "- fer-cnn has no contempt output: its FER+ and CK+48 scores leave out the contempt "
        "images (28 of FER+ test, 54 of CK+48); in the pools contempt is the expert's alone.\n"
        f"- Today's face-expert alone: FER+ test ECE {ft['ece_before']:.3f} on raw logits, "
        f"{ft['ece_after']:.3f} after its temperature {res['temperature']:.3f}.\n"
        "- MEAD (24 clips) and RAVDESS Actor_01 (11 video-only takes; calm counted as neutral) "
        "are dev data: framing, pooling and (w, tau) were chosen on them, so their scores are "
        "optimistic. CK+48 was not used for any choice. MEAD's 7-class score drops the contempt "
        "clips and the contempt output.\n"
        "- Tried for talking faces on the dev clips and not kept (exploration runs, not re-run "
        "here): an upper-face view (rows below 30/48 greyed) alone or averaged with the full view "
        "loses MEAD clips (today's expert 3/21 and 7-8/21; the strong-aug+KD expert, trained with "
        "lower-face cut-outs, 8/21 and 9-10/21); weighting frames by temporal stability of their "
        "probabilities ties conf^2; flip test-time averaging adds 0.005 valid balanced accuracy "
        "and no clip at twice the cost.\n"
        "- Issue 17's strong-augmentation retrains (strong-aug, strong-aug+KD: fine-tuned from "
        "the v1 weights by the loop `benchmarks/train_face_expert.py` had before the face-expert "
        "recipe; not shipped) were scored by an earlier run of this benchmark (results/faces.md "
        "at commit 523f9cf): alone CK+48 0.521 / 0.544 (no contempt) and MEAD 13/21; pooled with "
        "fer-cnn MEAD 15/21, but below today's expert's pool by the selection rule.\n"
        "- Framing and pooling (grid below, today's expert): esva's tracker crop already matches "
        "FER2013's framing; weighting frames by distance from neutral loses MEAD clips (talking "
        "mouths look surprised/happy); confidence weighting (conf^2) ties the mean.\n\n"
        "## Choosing w and tau (FER+ valid and dev clips only)\n\n"
        f"{grid}\n\n"
        "## Dev grid for today's face-expert (framing x pooling; MEAD and RAVDESS are dev data)\n\n"
        "crop is relative to esva's tracker default crop (Haar box + 10 % a side); > 1 is looser "
        "than the default tracker crop can give.\n\n"
        f"{dev_grid}\n\n## MEAD per clip (conf^2 pooling)\n\n{per_clip}\n"
    )
    with atomic_path(RESULTS / "faces.md") as tmp:
        tmp.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
