"""Train the shipped sync heads (``src/esva/assets/sync/``) with the ``sync-space`` recipe.

    .venv/bin/python benchmarks/train_sync_space.py --install  # train, copy into the package
    .venv/bin/python benchmarks/train_sync_space.py --check    # retrain, compare with shipped
    .venv/bin/python benchmarks/train_sync_space.py --visual face --out /tmp/face-heads

The same run as ``esva train --config configs/sync_space.yaml`` (the recipe
:mod:`esva.recipes.sync_space`, on the training engine): heads and the neural controller's
uncertainty net trained on every real audio-video clip of ``../shared/data`` (its README.md:
the 7 full-AV RAVDESS Actor_01 takes, 14 PC-AVS and 5 video-retalking clips with their own
audio, 10 silent StyleTalk videos with their same-name wav). ``benchmarks/align.py`` measures
heads of the same config trained without the clip being measured (:func:`fold_spaces`: one
run per held-out speaker fold, ``data.hold_out_fold``).

One thread (``train.threads``): floating-point sums in another order would change the last
bits of the weights. Decoded media are cached in ``$ESVA_CACHE/align-media`` (default
``~/.cache/esva``); held-out runs in ``$ESVA_CACHE/align-folds``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from esva.errors import EsvaError
from esva.hashing import file_sha256, text_sha256
from esva.recipes.registry import load_run
from esva.recipes.sync_space import SyncRunConfig, train
from esva.sync.clip_media import discover_av_clips
from esva.sync.controllers import UNCERTAINTY_FILE, UncertaintyNet, load_uncertainty
from esva.sync.space import ASSET_DIR, CONFIG_FILE, VISUAL_KINDS, WEIGHTS_FILE, SyncSpace
from esva.weights import cache_dir

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "sync_space.yaml"
DATA = ROOT.parent / "shared" / "data"
SHIPPED = (CONFIG_FILE, WEIGHTS_FILE, UNCERTAINTY_FILE)


def load_config(data: Path = DATA, config: Path = CONFIG, **model: object) -> SyncRunConfig:
    """The shipped run's config with ``data.root`` = ``data`` (and model options replaced)."""
    name, run = load_run(config)
    if name != "sync-space":
        raise EsvaError(f"not a sync-space config (recipe: {name})", config)
    run.data.root = str(Path(data).resolve())
    for key, value in model.items():
        setattr(run.model, key, value)
    return run


def run_key(run: SyncRunConfig) -> str:
    """Changes with everything that changes the weights (not where the data or output is)."""
    d = run.to_dict()
    d["train"].pop("out_dir")
    d["train"].pop("progress")
    d["data"].pop("root")
    return text_sha256(json.dumps([d, torch.__version__], sort_keys=True))[:16]


def fold_spaces(
    run: SyncRunConfig, k: int = 4, verbose: bool = False
) -> dict[int, tuple[SyncSpace, UncertaintyNet]]:
    """For each of ``k`` speaker folds, the heads and uncertainty net ``run``'s recipe trains
    without that fold's clips; cached in ``$ESVA_CACHE/align-folds/<run key>/fold-<i>``."""
    out = {}
    for fold in range(k):
        held = SyncRunConfig.from_dict(run.to_dict())
        held.data.folds, held.data.hold_out_fold, held.train.progress = k, fold, False
        where = cache_dir() / "align-folds" / run_key(held) / f"fold-{fold}"
        held.train.out_dir = str(where)
        best = where / "best"
        if not (best / UNCERTAINTY_FILE).exists():
            if where.exists():  # an interrupted run: start it again
                shutil.rmtree(where)
            start = time.perf_counter()
            train(held)
            if verbose:
                print(
                    f"  fold {fold}: trained on {len(result_clips(best))} clips in "
                    f"{time.perf_counter() - start:.0f} s",
                    file=sys.stderr,
                )
        out[fold] = (SyncSpace.load(best), load_uncertainty(best))
    return out


def result_clips(best: Path) -> list[str]:
    return json.loads((best / CONFIG_FILE).read_text())["training_clips"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--out", type=Path, help="run folder (default: a temporary one)")
    parser.add_argument("--install", action="store_true", help=f"copy the result into {ASSET_DIR}")
    parser.add_argument("--check", action="store_true", help="compare the result with the shipped")
    parser.add_argument("--visual", choices=VISUAL_KINDS, help="the visual crops (default: config)")
    args = parser.parse_args(argv)

    if not discover_av_clips(args.data):
        print(f"no clips under {args.data} (see its README.md)", file=sys.stderr)
        return 2
    run = load_config(args.data, args.config, **({"visual": args.visual} if args.visual else {}))
    run.train.out_dir = str(args.out or Path(tempfile.mkdtemp(prefix="sync-space-")))
    start = time.perf_counter()
    result = train(run)
    print(f"trained in {time.perf_counter() - start:.0f} s -> {result.best_dir}", file=sys.stderr)
    digests = {name: file_sha256(result.best_dir / name) for name in SHIPPED[1:]}
    for name, digest in digests.items():
        print(f"{digest}  {name}")
    if args.check:
        shipped = {name: file_sha256(ASSET_DIR / name) for name in SHIPPED[1:]}
        same = shipped == digests
        print("identical to the shipped files" if same else "DIFFERENT from the shipped files")
        return 0 if same else 1
    if args.install:
        for name in SHIPPED:
            shutil.copy2(result.best_dir / name, ASSET_DIR / name)
        SyncSpace.load(ASSET_DIR)  # the copied weights pass their recorded sha256
        print(f"installed into {ASSET_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
