"""The sync-space recipe: the heads behind ``esva align`` and the controllers' uncertainty net.

``esva train --config configs/sync_space.yaml`` (``recipe: sync-space``) trains, on the one
engine (:mod:`esva.recipes.engine`: AdamW + warm-up/cosine, checkpoints, exact resume,
``metrics.jsonl``), in two stages into one run folder:

1. **the heads** (:class:`esva.sync.space.SyncSpace`), SyncNet-style without labels: a batch
   is ``batch_size`` random segments of the real talking-face clips (augmented: mirrored crops,
   stationary noise), the loss is :func:`esva.sync.space.contrastive_sync_loss` (in-sync pair
   against the same clip's video shifted by ≥ ``negative_shift_s`` and the other segments'
   videos). An epoch is ``steps_per_epoch`` batches drawn from a generator seeded by (seed,
   epoch, batch), so the engine's resume (skip the batches done) continues bit for bit. Each
   epoch is scored on ``data.val_batches`` fixed, un-augmented batches of the same clips (a fit
   check: ``val_loss`` and ``val_top1``, the share of segments whose in-sync pair scores
   highest; there are no held-out clips in the shipped run). The best epoch's heads are
   ``best/`` (``heads.safetensors`` + ``config.json``, what ``esva/assets/sync`` holds);
2. **the uncertainty net** (:class:`esva.sync.controllers.UncertaintyNet`) of the neural
   controller, in ``uncertainty/``: streaming-window estimates of the same clips made with the
   best heads at known injected offsets, clean and degraded
   (:func:`esva.sync.controllers.uncertainty_windows`), fitted full-batch by the Laplace
   likelihood of their errors (a small tanh MLP: non-convex, gradient steps, so the engine's
   loop too). Its best net is copied into ``best/`` and recorded in ``config.json``.

``data.hold_out_fold`` trains without one speaker fold (``benchmarks/align.py``'s held-out
heads); ``data.synthetic`` trains on generated clips instead of real ones (tests, smoke runs).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from esva.errors import EsvaError
from esva.hashing import file_sha256
from esva.io import atomic_dir
from esva.recipes.config import TRAIN_LIMITS, SectionedRunConfig
from esva.recipes.engine import CHECKPOINT, Engine, LoopConfig, Step, TrainResult
from esva.recipes.sampler import EpochBatches
from esva.settings import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE
from esva.sync.clip_media import (
    CLIP_GROUPS,
    AVClip,
    ClipMedia,
    assign_folds,
    discover_av_clips,
    load_av_media,
    talking_clip,
)
from esva.sync.controllers import (
    UNCERTAINTY_FILE,
    UncertaintyNet,
    laplace_nll,
    save_uncertainty,
    uncertainty_windows,
)
from esva.sync.space import (
    SyncFeatures,
    SyncSpace,
    SyncSpaceConfig,
    contrastive_sync_loss,
    segment_batch,
)

__all__ = [
    "UNCERTAINTY_DIR",
    "SyncDataConfig",
    "SyncRunConfig",
    "SyncTrainConfig",
    "fit_heads",
    "fit_uncertainty",
    "heads_loop",
    "train",
    "training_clips",
]
UNCERTAINTY_DIR = "uncertainty"  # the second stage's run folder inside the run's


@dataclass
class SyncDataConfig:
    root: str = "data"  # the shared data folder (its README.md): ravdess_av/, av_sync/
    groups: list[str] = field(default_factory=lambda: list(CLIP_GROUPS))
    folds: int = 4  # speakers dealt round-robin to this many folds
    hold_out_fold: int | None = None  # train without this fold's clips (null: every clip)
    synthetic: int = 0  # > 0: this many generated talking clips instead of root's real ones
    cache_media: bool = True  # decoded clips cached in $ESVA_CACHE/align-media
    segment_s: float = 3.0  # length of a training segment
    flip: bool = True  # mirror half of the crops (left/right carries no timing)
    noise: bool = True  # stationary noise on half of the audio segments
    val_batches: int = 4  # fixed un-augmented batches scored after every epoch (0: none)

    LIMITS: ClassVar[dict[str, Any]] = {
        "folds": AT_LEAST_ONE,
        "hold_out_fold": NON_NEGATIVE,
        "synthetic": NON_NEGATIVE,
        "segment_s": POSITIVE,
        "val_batches": NON_NEGATIVE,
    }


@dataclass
class SyncTrainConfig:
    epochs: int = 6
    steps_per_epoch: int = 100  # sampled batches per epoch
    batch_size: int = 16  # segments per batch; the others in the batch are negatives
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup_epochs: float = 0.0  # 0: the engine's shortest warm-up (one step)
    warmup_share: float = 0.0
    grad_clip: float = 0.0  # 0: no clipping
    seed: int = 0
    negative_shift_s: float = 0.2  # own-clip shifts at least this large are negatives
    max_shift_s: float = 0.6  # ... up to this large
    temperature: float = 0.07
    monitor: str = "loss"  # the best epoch: lowest val_loss ("loss") or highest val_top1
    uncertainty_epochs: int = 5  # the uncertainty net's stage (full-batch steps)
    uncertainty_steps_per_epoch: int = 100
    uncertainty_lr: float = 1e-2
    checkpoint_every: int = 0  # optimizer steps between mid-epoch checkpoints (0: epochs only)
    threads: int | None = 1  # one thread: the same weights, bit for bit, on every run
    out_dir: str = "runs/sync-space"
    cpu: bool = True  # small linear heads: the CPU (reproducible bytes)
    progress: bool = True

    LIMITS: ClassVar[dict[str, Any]] = {
        **TRAIN_LIMITS,
        "steps_per_epoch": AT_LEAST_ONE,
        "warmup_epochs": NON_NEGATIVE,
        "warmup_share": NON_NEGATIVE,
        "negative_shift_s": POSITIVE,
        "max_shift_s": POSITIVE,
        "temperature": POSITIVE,
        "monitor": ("loss", "top1"),
        "uncertainty_epochs": AT_LEAST_ONE,
        "uncertainty_steps_per_epoch": AT_LEAST_ONE,
        "uncertainty_lr": POSITIVE,
        "threads": AT_LEAST_ONE,
    }


@dataclass
class SyncRunConfig(SectionedRunConfig):
    model: SyncSpaceConfig = field(default_factory=SyncSpaceConfig)
    data: SyncDataConfig = field(default_factory=SyncDataConfig)
    train: SyncTrainConfig = field(default_factory=SyncTrainConfig)

    @classmethod
    def from_dict(cls, raw: Any, source: str | Path | None = None) -> SyncRunConfig:
        sections = (SyncSpaceConfig, SyncDataConfig, SyncTrainConfig)
        run = cls(*cls.read_sections(raw, source, "sync-space", *sections))
        data, train = run.data, run.train
        if data.hold_out_fold is not None and data.hold_out_fold >= data.folds:
            raise EsvaError(
                f"'data' section: hold_out_fold must be below folds ({data.folds}), "
                f"got {data.hold_out_fold}",
                source,
            )
        if train.negative_shift_s >= train.max_shift_s:
            raise EsvaError(
                "'train' section: negative_shift_s must be below max_shift_s, got "
                f"{train.negative_shift_s} >= {train.max_shift_s}",
                source,
            )
        unknown = [g for g in data.groups if g not in CLIP_GROUPS]
        if unknown:
            raise EsvaError(
                f"'data' section: unknown clip group {unknown[0]!r} (known: "
                f"{', '.join(CLIP_GROUPS)})",
                source,
            )
        return run

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": dataclasses.asdict(self.model),
            "data": dataclasses.asdict(self.data),
            "train": dataclasses.asdict(self.train),
        }

    def resolve_paths(self, folder: Path) -> None:
        if not Path(self.data.root).is_absolute():
            self.data.root = str((folder / self.data.root).resolve())


def _fingerprint(run: dict) -> dict:
    """What must not change between a run and its resume: everything but the epoch budget,
    where the run folder is and what only affects speed or reporting (as the ESVA recipe's)."""
    d = json.loads(json.dumps(run))
    for key in ("epochs", "out_dir", "progress", "checkpoint_every"):
        d["train"].pop(key, None)
    for key in ("root", "cache_media"):  # the same clips, read from a moved data folder
        d.get("data", {}).pop(key, None)
    return d


# --- data ---------------------------------------------------------------------------------------
def training_clips(data: SyncDataConfig) -> list[AVClip]:
    """The real clips a run trains on: ``data.groups`` of ``data.root`` minus the held-out fold."""
    clips = discover_av_clips(data.root, tuple(data.groups))
    if not clips:
        raise EsvaError("no audio-video clips in the data folder (see its README.md)", data.root)
    if data.hold_out_fold is not None:
        folds = assign_folds(clips, data.folds)
        clips = [c for c, f in zip(clips, folds, strict=True) if f != data.hold_out_fold]
    return clips


class _SegmentBatches(Dataset):
    """Item (epoch, i): a batch of random segments drawn by a generator seeded (seed, epoch, i)."""

    def __init__(self, clips: list[SyncFeatures], run: SyncRunConfig, augment: bool = True):
        self.clips, self.run, self.augment = clips, run, augment
        self.length = round(run.data.segment_s * run.model.fps)

    def __len__(self) -> int:  # batches of one epoch
        return self.run.train.steps_per_epoch

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        epoch, i = key
        # Training batches are stream 0, the fixed validation batches stream 1 (epoch 0).
        stream = 0 if self.augment else 1
        rng = np.random.default_rng([self.run.train.seed, stream, epoch, i])
        d = self.run.data
        return segment_batch(
            self.clips,
            rng,
            self.run.train.batch_size,
            self.length,
            self.run.model.pixels,
            flip=d.flip and self.augment,
            noise=d.noise and self.augment,
        )


def _batch_loader(dataset: Dataset, sampler: Sampler) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=1,  # each item is a whole batch already
        sampler=sampler,
        collate_fn=lambda items: items[0],
        # Its own generator: starting an iterator must not draw from the global RNG.
        generator=torch.Generator(),
    )


# --- stage 1: the heads ------------------------------------------------------------------------
def heads_loop(run: SyncRunConfig) -> LoopConfig:
    """The engine's options of the heads' stage (the train section's shared ones)."""
    return LoopConfig.from_section(run.train)


def _sync_loss(space: SyncSpace, batch: tuple[torch.Tensor, ...], run: SyncRunConfig):
    a, v, ma, mv = batch
    za, zv = space.embed(a, v, ma, mv)
    t, fps = run.train, run.model.fps
    return contrastive_sync_loss(
        za,
        zv,
        ma,
        mv,
        max_shift=round(t.max_shift_s * fps),
        negative_shift=round(t.negative_shift_s * fps),
        temperature=t.temperature,
    )


def fit_heads(
    engine: Engine, run: SyncRunConfig, clips: list[SyncFeatures], meta: dict[str, Any]
) -> TrainResult:
    """Stage 1 on the raw features ``clips``; ``meta`` goes into ``best/config.json``."""
    if not clips:
        raise EsvaError("no clips to train the sync space on", run.data.root)
    sampler = EpochBatches(run.train.steps_per_epoch)
    loader = _batch_loader(_SegmentBatches(clips, run), sampler)
    fixed = _SegmentBatches(clips, run, augment=False)
    val = [fixed[(0, i)] for i in range(run.data.val_batches)]
    space = SyncSpace(run.model)

    def loss_fn(model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> Step:
        loss, top1 = _sync_loss(model, batch, run)
        return Step(loss, {"loss": float(loss.detach()), "top1": float(top1)})

    @torch.no_grad()
    def validate(model: torch.nn.Module, accelerator) -> tuple[dict, float | None]:
        if not val:
            return {}, None
        model = accelerator.unwrap_model(model).eval()
        scores = [_sync_loss(model, b, run) for b in val]
        model.train()
        loss = float(np.mean([float(s[0]) for s in scores]))
        top1 = float(np.mean([float(s[1]) for s in scores]))
        return {"val_loss": loss, "val_top1": top1}, (
            -loss if run.train.monitor == "loss" else top1
        )

    def save_best(model: SyncSpace, directory: Path) -> None:
        with atomic_dir(directory) as tmp:
            model.save(tmp, meta)

    return engine.fit(
        space,
        loader,
        sampler,
        loss_fn,
        validate,
        save_best,
        loss_key="train_loss",
        val_keys=("val_loss", "val_top1"),
    )


# --- stage 2: the uncertainty net ----------------------------------------------------------------
def fit_uncertainty(
    inputs: np.ndarray,
    errors_ms: np.ndarray,
    loop: LoopConfig,
    steps_per_epoch: int,
    run_dict: dict[str, Any] | None = None,
    resume: bool = False,
) -> tuple[UncertaintyNet, TrainResult]:
    """Fit :class:`UncertaintyNet` on window ``inputs`` (N, 4) and their errors (ms) on the
    engine: every batch is the whole set (full batch), ``loop.epochs`` epochs of
    ``steps_per_epoch`` batches (``loop``: AdamW without weight decay or clipping in the
    recipe). The best epoch's net is ``<loop.out_dir>/best/uncertainty.safetensors``;
    ``run_dict`` is the run's config (its fingerprint guards a resume)."""
    if len(inputs) == 0:
        raise EsvaError("no defined window estimates to fit the uncertainty net on", loop.out_dir)
    run_dict = run_dict or {"train": dataclasses.asdict(loop), "steps": steps_per_epoch}
    engine = Engine(loop, run_dict, _fingerprint, resume)
    x = torch.as_tensor(inputs, dtype=torch.float32)
    err = torch.as_tensor(np.abs(errors_ms), dtype=torch.float32)
    sampler = EpochBatches(steps_per_epoch)
    loader = _batch_loader(_FullBatch(x, err, steps_per_epoch), sampler)
    net = UncertaintyNet()

    def loss_fn(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> Step:
        loss = laplace_nll(model(batch[0]), batch[1])
        return Step(loss, {"nll": float(loss.detach())})

    def validate(model: torch.nn.Module, accelerator) -> tuple[dict, float | None]:
        return {}, None  # the epoch's mean training likelihood decides (no held-out windows)

    def save_best(model: UncertaintyNet, directory: Path) -> None:
        with atomic_dir(directory) as tmp:
            save_uncertainty(model, tmp)

    result = engine.fit(net, loader, sampler, loss_fn, validate, save_best, loss_key="train_nll")
    from esva.sync.controllers import load_uncertainty

    return load_uncertainty(result.best_dir), result


class _FullBatch(Dataset):
    def __init__(self, x: torch.Tensor, err: torch.Tensor, steps: int) -> None:
        self.x, self.err, self.steps = x, err, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x, self.err


def uncertainty_loop(run: SyncRunConfig) -> LoopConfig:
    t = run.train
    return LoopConfig(
        epochs=t.uncertainty_epochs,
        lr=t.uncertainty_lr,
        out_dir=str(Path(t.out_dir) / UNCERTAINTY_DIR),
        seed=t.seed,
        grad_clip=0.0,
        checkpoint_every=t.checkpoint_every,
        cpu=t.cpu,
        progress=t.progress,
        threads=t.threads,
    )


# --- the run ------------------------------------------------------------------------------------
def train(run: SyncRunConfig, resume: bool = False) -> TrainResult:
    """Both stages as configured; returns the heads' result (``best_dir``: the shipped files)."""
    engine = Engine(heads_loop(run), run.to_dict(), _fingerprint, resume)  # refusals first
    if engine.accelerator.num_processes > 1:
        # Two small linear heads: nothing to gain from several processes, and the second
        # stage's windows are made once, on one process.
        raise EsvaError("the sync-space recipe runs on one process (not under torchrun/accelerate)")
    if run.data.synthetic:
        names = [f"synthetic-{k}" for k in range(run.data.synthetic)]
        media = [talking_clip(run.train.seed * 1000 + k) for k in range(run.data.synthetic)]
    else:
        clips = training_clips(run.data)
        names = [c.name for c in clips]
        media = load_av_media(clips, cache=run.data.cache_media)
    return train_on_media(engine, run, media, names)


def train_on_media(
    engine: Engine, run: SyncRunConfig, media: list[ClipMedia], names: list[str]
) -> TrainResult:
    """Both stages on decoded ``media`` (named ``names`` in the heads' ``config.json``)."""
    blank = SyncSpace(run.model)
    feats = [blank.features(m.audio, m.track) for m in media]
    recipe = run.to_dict()
    recipe["train"].pop("out_dir")
    recipe["data"].pop("root")  # where the data was is not part of the recipe
    meta = {
        "recipe": {"name": "sync-space", **recipe},
        "training_clips": names,
        "training_frames": int(sum(len(f) for f in feats)),
        "torch": torch.__version__,
    }
    result = fit_heads(engine, run, feats, meta)
    space = SyncSpace.load(result.best_dir)
    x, err = uncertainty_windows(space, media, seed=run.train.seed)
    loop = uncertainty_loop(run)
    resume = engine.resume and (Path(loop.out_dir) / CHECKPOINT).exists()
    steps = run.train.uncertainty_steps_per_epoch
    _, unc = fit_uncertainty(x, err, loop, steps, run.to_dict(), resume)
    # best/ gets the uncertainty net beside the heads, its hash in config.json (one swap).
    with atomic_dir(result.best_dir) as tmp:
        for name in ("heads.safetensors",):
            shutil.copy2(result.best_dir / name, tmp / name)
        shutil.copy2(unc.best_dir / UNCERTAINTY_FILE, tmp / UNCERTAINTY_FILE)
        space.save(
            tmp,
            {
                **meta,
                "best_epoch": result.best_epoch,
                "uncertainty_windows": len(x),
                "uncertainty_sha256": file_sha256(tmp / UNCERTAINTY_FILE),
            },
        )
    if not math.isfinite(result.best_score):
        raise EsvaError("sync-space training diverged (no finite score)", result.out_dir)
    return result
