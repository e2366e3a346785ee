"""Rebuild the default model shipped in ``src/esva/assets/default_model``, bit for bit.

    python benchmarks/train_default_model.py              # -> runs/default_model/model/
    python benchmarks/train_default_model.py --install    # ... and copy it into the package

The configuration is the one the speaker-independent cross-validation of
``benchmarks/ravdess.py`` chose on its validation actors (results/ravdess.md); here it is trained
once on **all** RAVDESS speech actors 01-20 (1200 clips). With no actor left for early stopping,
it trains for a fixed number of epochs: the median best epoch of that configuration's 15
cross-validation runs.

Reproducible bit for bit on the same software (torch 2.13.0 CPU, numpy, the weights of
``esva weights list``): the clips are sorted by name, the features are extracted with one
torch thread per process, training runs with one thread and a fixed seed, the batch order
depends only on (seed, epoch), and the weights are written with fixed safetensors metadata
(several metadata keys would be written in a per-process hash order). The script prints the
sha256 of ``config.json``, ``extraction.json`` and ``model.safetensors``.

The shipped ``model.safetensors`` was trained by the training loop that preceded the shared
engine (``esva.recipes.engine``: transformers' warm-up, which starts at LR 0, and a loader with
its own generator). Rerun today (2026-12-02), the script gives sha256 ``98f5b972...`` instead:
the same label as the shipped weights on all 1200 training clips, mean |Δp| 0.0008 (measured by
loading both on the script's feature store). The shipped weights are kept so that ``esva
predict`` answers as before until the multimodal default replaces them; ``--install`` ships the
rebuilt ones.

Why audio only: the issue asks for the FER visual stream "when a face is present", but only
Actor_01 has video here (11 of the 1200 takes, 7 of them neutral or surprised): a visual branch
trained on that would learn one actor's face and label prior, not facial expression, and its
untrained fusion weights would then decide predictions on every video. So the shipped model
reads the audio track only (``esva predict`` on a video uses its audio and says so).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ravdess as rb
from _common import report_and_install, train_and_export

# --- the configuration chosen by cross-validation (results/ravdess.md) -------------------------
# Chosen on the validation actors only (seed 0, mean over the 5 folds; results/ravdess.md):
# Whisper layer 2 (val F1 0.768 vs last 0.724, mean of 4 layers 0.761), then among the
# variants on that layer: w/o contrastive 0.777 > full ESVA 0.768 > w/o MSFE 0.748 >
# whisper-tiny+prosody 0.693. So the shipped model is ESVA with MSFE and without the
# supervised contrastive term (the difference is within one fold's noise; we follow the rule).
LAYER = "2"  # Whisper tiny.en hidden state after encoder layer 2 (of 4)
STREAMS = "whisper-tiny"  # the audio stream spec
FLAGS: dict[str, bool] = {"use_contrastive": False}
EPOCHS = 14  # median best epoch of that configuration's cross-validation runs (11,12,14,14,21)
SEED = 0


def build(data: Path, work: Path, workers: int) -> Path:
    """Extract, train on all clips, export; returns the exported model folder."""
    import torch

    from esva.io import atomic_write
    from esva.recipes.config import DataConfig, RunConfig, TrainConfig

    torch.set_num_threads(1)
    clips = sorted(rb.load_clips(data), key=lambda c: c.name)
    if len(clips) != 1200:
        print(f"[default] warning: {len(clips)} clips, the shipped model saw 1200", flush=True)
    view = work / "view"
    streams = {}
    for enc in STREAMS.split("+"):
        layer = LAYER if enc == "whisper-tiny" else None
        slug = f"{enc}-{rb.layer_slug(layer)}" if layer else enc
        rb.extract(clips, work / "stores" / slug, enc, layer, workers)
        streams[enc] = work / "stores" / slug / enc
    view.mkdir(parents=True, exist_ok=True)
    for name, target in streams.items():
        if not (view / name).exists():
            (view / name).symlink_to(target.resolve(), target_is_directory=True)
    with atomic_write(view / "labels_all.csv", newline="") as handle:
        handle.write("name,discrete,speaker,split\n")
        handle.writelines(f"{c.name},{c.label},{c.speaker},train\n" for c in clips)

    classes = rb.classes_of(clips)
    run_dir = work / "train"
    shutil.rmtree(run_dir, ignore_errors=True)
    run = RunConfig(
        rb.model_config(STREAMS, classes, FLAGS),
        DataConfig(root=str(view), labels="labels_all.csv", streams={"audio": STREAMS}),
        TrainConfig(
            **{**rb.TRAIN, "epochs": EPOCHS, "patience": EPOCHS + 1},
            seed=SEED,
            out_dir=str(run_dir),
            cpu=True,
            progress=False,
        ),
    )
    return train_and_export(run, work, view, STREAMS, "default")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=rb.SHARED / "ravdess_speech")
    parser.add_argument("--work", type=Path, default=rb.ROOT / "runs" / "default_model")
    parser.add_argument("--workers", type=int, default=2, help="extraction processes")
    parser.add_argument(
        "--install",
        action="store_true",
        help="copy config.json + model.safetensors into src/esva/assets/",
    )
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        sys.exit(f"RAVDESS speech not found at {args.data} (set ESVA_SHARED or --data)")
    os.environ["OMP_NUM_THREADS"] = "1"
    out = build(args.data, args.work, args.workers)
    report_and_install(out, args.install, sort=False)


if __name__ == "__main__":
    main()
