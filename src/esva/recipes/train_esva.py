"""The ESVA training recipe: L = L_align + λ·L_emo (+ μ·L_contrast), Eq. 7.

Runs through ``accelerate``, so the same loop trains on a CPU, one GPU or many (DDP): launch it
with ``accelerate launch`` or ``torchrun`` and every rank takes its shard of each batch.

* AdamW, linear warm-up then cosine decay, gradient clipping, seeds;
* early stopping on the validation split's weighted F1 (MER's metric), best model kept;
* a checkpoint after every epoch, written to a temporary directory and renamed into place;
  ``resume=True`` continues from it exactly (same batches, same dropout masks: the batch order
  depends only on (seed, epoch) and the RNG states are restored);
* one JSON line of metrics per epoch in ``metrics.jsonl``, a progress bar on the main process.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from torch.utils.data import DataLoader

from esva.data.clip_table import ClipLabel
from esva.errors import EsvaError
from esva.evaluate.classification import score_classification
from esva.extract.provenance import model_extraction, write_extraction
from esva.hashing import state_dict_sha256
from esva.io import atomic_write, write_json
from esva.model import ESVAModel
from esva.model.inputs import FeatureDataset, collate
from esva.recipes.config import DataConfig, RunConfig
from esva.recipes.progress import EpochProgress
from esva.recipes.sampler import EpochSampler

CHECKPOINT = "checkpoint"
BEST = "best"
METRICS = "metrics.jsonl"


@dataclass
class TrainResult:
    out_dir: Path
    best_dir: Path
    best_epoch: int
    best_score: float
    epochs_run: int
    history: list[dict]
    seconds: float
    main_process: bool = True  # False on the other ranks of a distributed run


# --- data ---------------------------------------------------------------------------------------
def split_clips(clips: list[ClipLabel], data: DataConfig, seed: int) -> dict[str, list[ClipLabel]]:
    """train/val/test lists: from the ``split`` column when present, else a held-out share.

    Without a split column the validation share is drawn by whole speakers when a ``speaker``
    column exists (speaker-independent), by clips otherwise; the test list is then empty.
    """
    if any(c.split for c in clips):
        splits = {
            "train": [c for c in clips if c.split == data.train_split],
            "val": [c for c in clips if c.split == data.val_split],
            "test": [c for c in clips if c.split == data.test_split],
        }
        if not splits["train"]:
            raise EsvaError(
                f"no clips in split {data.train_split!r} (splits present: "
                f"{sorted({c.split for c in clips if c.split})})"
            )
        return splits
    rng = np.random.default_rng(seed)
    labelled = [c for c in clips if c.label is not None]
    speakers = sorted({c.speaker for c in labelled if c.speaker})
    if len(speakers) >= 3:
        n_val = max(1, round(len(speakers) * data.val_fraction))
        held = set(rng.permutation(speakers)[:n_val].tolist())
        val = [c for c in labelled if c.speaker in held]
    else:
        order = rng.permutation(len(labelled))
        n_val = max(1, round(len(labelled) * data.val_fraction))
        val = [labelled[i] for i in order[:n_val]]
    val_names = {c.name for c in val}
    return {"train": [c for c in labelled if c.name not in val_names], "val": val, "test": []}


def make_loader(
    dataset: FeatureDataset, batch_size: int, sampler=None, num_workers: int = 0
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=partial(collate, modalities=dataset.config.modalities),
    )


# --- evaluation ---------------------------------------------------------------------------------
@torch.no_grad()
def predict_loader(
    model: ESVAModel, loader: DataLoader, accelerator: Accelerator | None = None
) -> dict:
    """Run ``model`` over ``loader``; returns per-clip names, labels, probabilities, offsets."""
    model.eval()
    out = {
        "name": [],
        "label": [],
        "prob": [],
        "valence": [],
        "tau_frames": [],
        "confidence": [],
        "present": [],
        "loss": [],
    }
    for batch in loader:
        names = batch.pop("name")
        result = model(batch)
        b = result.logits.shape[0]
        tau = result.tau_frames if result.tau_frames is not None else torch.full((b,), float("nan"))
        conf = result.offset_confidence if result.offset_confidence is not None else torch.zeros(b)
        valence = result.valence if result.valence is not None else torch.full((b,), float("nan"))
        present = torch.stack([result.present[s] for s in sorted(result.present)], dim=1)
        loss = result.losses.get("total", torch.tensor(float("nan"))).reshape(1).expand(b)
        tensors = [batch["label"], result.probabilities, valence, tau, conf, present, loss]
        if accelerator is not None:
            # Both gathers drop the padding DDP adds to the last batch.
            tensors = accelerator.gather_for_metrics([t.contiguous() for t in tensors])
            names = accelerator.gather_for_metrics(names, use_gather_object=True)
        for key, t in zip(
            ["label", "prob", "valence", "tau_frames", "confidence", "present", "loss"],
            tensors,
            strict=True,
        ):
            out[key].append(t.detach().cpu())
        out["name"].extend(names)
    streams = sorted(result.present) if loader and out["label"] else []
    merged = {k: torch.cat(v).numpy() for k, v in out.items() if k != "name" and v}
    merged["name"] = out["name"]
    merged["streams"] = streams
    return merged


def score_predictions(pred: dict, classes: list[str]) -> dict:
    labelled = pred["label"] >= 0
    gold = {
        n: classes[y] for n, y, ok in zip(pred["name"], pred["label"], labelled, strict=True) if ok
    }
    guess = {n: classes[int(p.argmax())] for n, p in zip(pred["name"], pred["prob"], strict=True)}
    if not gold:
        return {}
    scores = score_classification(gold, guess, classes)
    scores.pop("per_class")
    scores["loss"] = float(np.nanmean(pred["loss"])) if len(pred["loss"]) else float("nan")
    return scores


# --- the loop -----------------------------------------------------------------------------------
def _lr_lambda(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: biases, norms, MSFE's mixing logits and the learned
    "missing modality" embeddings are not shrunk towards zero (for the mixing logits that
    would pull every w_i back to uniform and hide which time scale matters)."""
    decay, keep = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else keep).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def weights_sha256(model: torch.nn.Module) -> str:
    """A hash of all weights, to compare models across processes or runs bit for bit."""
    return state_dict_sha256(model.state_dict())


def _fingerprint(run: RunConfig) -> dict:
    """What must not change between a run and its resume (everything but the epoch budget)."""
    d = run.to_dict()
    for key in ("epochs", "progress", "num_workers", "patience"):
        d["train"].pop(key, None)
    return d


def train(run: RunConfig, resume: bool = False) -> TrainResult:
    """Train an ESVA model as configured; returns where the best model is and its score."""
    cfg, tcfg = run.model, run.train
    if not cfg.encoders:
        # Remember which stream folders the model was trained on: evaluate/predict read them.
        cfg.encoders = {m: run.data.streams.get(m, m) for m in cfg.modalities}
    out_dir = Path(tcfg.out_dir)
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    accelerator = Accelerator(cpu=tcfg.cpu, kwargs_handlers=[ddp])
    set_seed(tcfg.seed)
    main = accelerator.is_main_process
    ckpt_dir = out_dir / CHECKPOINT

    dataset = FeatureDataset(Path(run.data.root), cfg, run.data.labels, dict(run.data.streams))
    splits = split_clips(dataset.clips, run.data, tcfg.seed)
    train_set = dataset.subset([c for c in splits["train"] if c.label is not None])
    val_set = dataset.subset(splits["val"]) if splits["val"] else None
    if len(train_set) == 0:
        raise EsvaError("no labelled training clips", Path(run.data.root) / run.data.labels)
    sampler = EpochSampler(
        [train_set.class_index[c.label] for c in train_set.clips], tcfg.seed, tcfg.balanced_sampling
    )
    train_loader = make_loader(train_set, tcfg.batch_size, sampler, tcfg.num_workers)
    val_loader = make_loader(val_set, tcfg.batch_size, None, tcfg.num_workers) if val_set else None

    model = ESVAModel(cfg)
    optimizer = torch.optim.AdamW(param_groups(model, tcfg.weight_decay), lr=tcfg.lr)
    steps_per_epoch = math.ceil(len(train_set) / (tcfg.batch_size * accelerator.num_processes))
    total = steps_per_epoch * tcfg.epochs
    warmup = max(1, round(tcfg.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(_lr_lambda, warmup=warmup, total=total)
    )
    model, optimizer, train_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, scheduler
    )
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)

    state = {"epoch": 0, "best_score": -math.inf, "best_epoch": 0, "bad_epochs": 0, "history": []}
    if resume:
        if not (ckpt_dir / "trainer_state.json").exists():
            raise EsvaError("nothing to resume: no checkpoint in the output directory", out_dir)
        saved = json.loads((ckpt_dir / "trainer_state.json").read_text())
        if saved["fingerprint"] != _fingerprint(run):
            raise EsvaError(
                "cannot resume: the checkpoint was made with a different config", ckpt_dir
            )
        accelerator.load_state(str(ckpt_dir))
        state = saved["state"]
    elif ckpt_dir.exists():  # every rank checks: one rank raising alone would hang the others
        raise EsvaError(
            "output directory already holds a run; pass --resume to continue it or choose "
            "another --out",
            out_dir,
        )
    accelerator.wait_for_everyone()

    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        run_dict = run.to_dict()
        write_json(out_dir / "run_config.json", run_dict)
    started = time.perf_counter()
    progress = EpochProgress(
        main and tcfg.progress, "train_total", ("val_weighted_f1", "val_accuracy", "val_loss")
    )
    unwrapped = accelerator.unwrap_model(model)
    for epoch in range(state["epoch"], tcfg.epochs):
        if state["bad_epochs"] >= tcfg.patience:
            break
        t0 = time.perf_counter()
        model.train()
        train_loader.set_epoch(epoch)
        sums: dict[str, float] = {}
        n_batches = 0
        progress.start(f"epoch {epoch + 1}/{tcfg.epochs}", len(train_loader))
        for batch in train_loader:
            batch.pop("name")
            result = model(batch)
            loss = result.losses["total"]
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if tcfg.grad_clip:
                accelerator.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            optimizer.step()
            scheduler.step()
            for k, v in result.losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            n_batches += 1
            progress.advance(loss=float(loss.detach()))
        progress.stop()
        record = {
            "epoch": epoch + 1,
            **{f"train_{k}": v / max(1, n_batches) for k, v in sums.items()},
            "lr": scheduler.get_last_lr()[0],
        }
        if val_loader is not None:
            val = score_predictions(predict_loader(model, val_loader, accelerator), cfg.classes)
            record.update({f"val_{k}": v for k, v in val.items()})
            score = val.get(tcfg.monitor, -math.inf)
        else:
            score = -record["train_total"]
        if (weights := unwrapped.msfe_branch_weights()) is not None:
            record["msfe_weights"] = weights
        record["seconds"] = time.perf_counter() - t0
        improved = score > state["best_score"]
        if improved:
            state.update(best_score=score, best_epoch=epoch + 1, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        state["history"].append(record)
        if main:
            if improved:
                unwrapped.save_pretrained(out_dir / BEST)
                # How the features were made (fps, faces, encoder options): esva predict reuses it.
                write_extraction(out_dir / BEST, model_extraction(run.data.root, cfg.encoders))
            with atomic_write(out_dir / METRICS) as handle:
                handle.writelines(json.dumps(r) + "\n" for r in state["history"])
            progress.log(record, improved)
        _save_checkpoint(accelerator, ckpt_dir, state, _fingerprint(run))
    accelerator.wait_for_everyone()
    seconds = time.perf_counter() - started
    # Each rank records the hash of its weights: under DDP they must all be identical.
    write_json(
        out_dir / f"rank{accelerator.process_index}.json",
        {
            "weights_sha256": weights_sha256(unwrapped),
            "process_index": accelerator.process_index,
            "num_processes": accelerator.num_processes,
            "epochs_run": state["epoch"],
        },
    )
    accelerator.wait_for_everyone()
    if state["best_epoch"] == 0:
        raise EsvaError("training produced no model (zero epochs run)", out_dir)
    return TrainResult(
        out_dir,
        out_dir / BEST,
        state["best_epoch"],
        state["best_score"],
        state["epoch"],
        state["history"],
        seconds,
        main,
    )


def _save_checkpoint(
    accelerator: Accelerator, ckpt_dir: Path, state: dict, fingerprint: dict
) -> None:
    """accelerate's save_state into a temporary directory, renamed into place as a whole."""
    tmp = ckpt_dir.with_name(f".{ckpt_dir.name}.tmp")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # every rank writes its own RNG state file
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(tmp / "trainer_state.json", {"state": state, "fingerprint": fingerprint})
        old = ckpt_dir.with_name(f".{ckpt_dir.name}.old")
        if ckpt_dir.exists():
            os.replace(ckpt_dir, old)
        os.replace(tmp, ckpt_dir)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
