"""Train esva's face-expression expert (``face-expert``) with its recipe and install the files.

    PYTHONPATH=src python benchmarks/train_face_expert.py --install     # ~25 min on one thread
    PYTHONPATH=src python benchmarks/train_face_expert.py --epochs 1 --out runs/fe_smoke

The training is the ``face-expert`` recipe (:mod:`esva.recipes.face_expert`) on the one engine
(:mod:`esva.recipes.engine`), the same run as ``esva train --config configs/face_expert.yaml``
(the settings and their comments are in that file). This script loads the config, trains it
(``--out`` and ``--epochs`` override the config's; ``--resume`` continues a cut-short run), and
with ``--install`` copies the best folder (``model.safetensors`` fp16 + ``config.json``) into
``src/esva/assets/face_expert`` and prints the sha256 of both files, to record in
``esva.encoders.face_expert.WEIGHTS_SHA256`` (then ``python benchmarks/faces.py
--update-config`` writes the measured scores into the config and prints its new sha256).

Data: ``../shared/data/face_images/ferplus`` (FER2013 48x48 grey faces, FER+ votes of 10
annotators over neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown,
not-a-face). Protocol (:mod:`esva.data.ferplus`): an image is kept when its majority vote is one
of the 8 emotions (ties go to the first class in that order); the training target is the vote
distribution over the 8 emotions (soft labels), the reported accuracy is against the majority
label. The decoded images are cached under ``runs/ferplus_cache/`` (git-ignored).

Timing and result (measured 2026-12-07 on this project's shared 2-core machine, one torch
thread, other people's jobs beside it): ``esva train --config configs/face_expert.yaml --out
runs/face_expert_engine``: 10 epochs of 443 steps, 66.5-283 s an epoch (the machine's load),
24 min wall; best epoch 10, FER+ valid 0.811 (``runs/face_expert_engine/metrics.jsonl``). That
run is the shipped v2 (installed with ``--install-only runs/face_expert_engine/best``). The old
loop of this script (OneCycle, its own batch order and augmentation draws) trained v1; measured
beside it with ``benchmarks/faces.py --extra-expert engine-retrain=...``, v2 alone ties or edges
v1, and the face-ensemble settings re-chosen for it by their selection rule gain a MEAD dev clip
(15/21) while CK+48, never used for a choice, goes from 0.793 to 0.782 (results/faces.md, the
model card).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from esva.errors import EsvaError  # noqa: E402
from esva.hashing import file_sha256  # noqa: E402
from esva.recipes.registry import load_run, train_recipe  # noqa: E402

CONFIG = ROOT / "configs" / "face_expert.yaml"
ASSET = ROOT / "src" / "esva" / "assets" / "face_expert"
FILES = ("model.safetensors", "config.json")


def install(best: Path, target: Path = ASSET) -> dict[str, str]:
    """Copy the best folder's two files into the package; returns their sha256."""
    for name in FILES:
        if not (best / name).is_file():
            raise EsvaError(f"the best folder has no {name}", best)
    for name in FILES:
        shutil.copyfile(best / name, target / name)
    return {name: file_sha256(target / name) for name in FILES}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, default=CONFIG)
    ap.add_argument("--out", type=Path, help="run folder (overrides train.out_dir)")
    ap.add_argument("--epochs", type=int, help="overrides train.epochs")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out")
    ap.add_argument(
        "--install", action="store_true", help="copy the best folder into src/esva/assets"
    )
    ap.add_argument(
        "--install-only",
        type=Path,
        metavar="BEST",
        help="skip training: install this best folder (e.g. runs/face_expert_engine/best)",
    )
    args = ap.parse_args()
    try:
        if args.install_only:
            best = args.install_only
        else:
            name, run = load_run(args.config)
            if name != "face-expert":
                raise EsvaError(f"config names recipe {name!r}, not 'face-expert'", args.config)
            if args.out:
                run.train.out_dir = str(args.out)
            if args.epochs:
                run.train.epochs = args.epochs
            result = train_recipe("face-expert", run, resume=args.resume)
            best = result.best_dir
            print(
                f"best epoch {result.best_epoch} of {result.epochs_run}: FER+ valid accuracy "
                f"{result.best_score:.4f}, {result.seconds / 60:.1f} min -> {best}"
            )
        if args.install or args.install_only:
            for name, sha in install(best).items():
                print(f"{name} sha256 {sha}")
            print("record them in esva.encoders.face_expert.WEIGHTS_SHA256")
    except EsvaError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
