"""The training engine both recipes (ESVA, Eq. 7; LLM instruction tuning) run on.

A recipe brings the data, the model, a per-batch loss, a per-epoch validation and a way to
save its best model; the engine owns everything else:

* ``accelerate``: one loop for a CPU, one GPU or many (DDP: ``accelerate launch`` or
  ``torchrun``), gradient accumulation, clipping, seeds;
* AdamW with weight decay on matrices only, transformers' linear warm-up + cosine schedule;
* checkpoints after every epoch and every ``checkpoint_every`` optimizer steps, written with
  ``save_state`` into a temporary directory and renamed into place; every file's sha256 is
  recorded in ``trainer_state.json`` and checked on resume (accelerate would load a tampered
  RNG pickle silently). ``trainable_only`` keeps only the trainable weights (the LLM's frozen
  base is rebuilt from its source, not saved);
* ``resume=True`` continues exactly, mid-epoch included: the batch order depends only on
  (seed, epoch), the batches already done are skipped and the RNG states are restored; the
  config must match the checkpoint's (its fingerprint);
* ``metrics.jsonl`` (one line per epoch), ``steps.jsonl`` (one per optimizer step), a progress
  bar on the main process, optional early stopping, the best epoch saved through the recipe's
  ``save_best``, and each rank's final weights hash in ``rank<i>.json`` (equal under DDP).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from esva.errors import EsvaError
from esva.hashing import file_sha256, state_dict_sha256
from esva.io import atomic_write, read_json, remove_stale_temps, write_json
from esva.recipes.progress import EpochProgress

if TYPE_CHECKING:  # imported when training starts: `esva explain` loads this package too
    from accelerate import Accelerator

CHECKPOINT = "checkpoint"
BEST = "best"
METRICS = "metrics.jsonl"
STEPS = "steps.jsonl"
TRAINER_STATE = "trainer_state.json"


@dataclass
class LoopConfig:
    """The engine's share of a recipe's ``train`` section."""

    epochs: int
    lr: float
    out_dir: str
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    grad_accum: int = 1  # optimizer step every this many batches
    seed: int = 0
    # Warm-up length: ``warmup_epochs`` epochs' worth of steps plus ``warmup_share`` of all steps.
    warmup_epochs: float = 0.0
    warmup_share: float = 0.0
    checkpoint_every: int = 0  # optimizer steps between mid-epoch checkpoints (0: epochs only)
    patience: int | None = None  # early stopping: epochs without a better score (None: off)
    cpu: bool = False
    progress: bool = True
    threads: int | None = None  # torch CPU threads (None: torch's default)
    trainable_only: bool = False  # checkpoints keep only parameters with requires_grad
    find_unused_parameters: bool = False  # DDP: some parameters may get no gradient

    @classmethod
    def from_section(cls, train: Any, **rest: Any) -> LoopConfig:
        """The options a recipe's ``train`` section names as this class does, then ``rest``."""
        same = {f.name: getattr(train, f.name) for f in fields(cls) if hasattr(train, f.name)}
        return cls(**{**same, **rest})


@dataclass
class Step:
    """What a recipe's loss function returns for one batch."""

    loss: torch.Tensor
    logs: dict[str, float]  # averaged over the epoch into ``train_<key>``
    info: dict[str, Any] = field(default_factory=dict)  # only in steps.jsonl


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


def param_groups(
    model: torch.nn.Module,
    weight_decay: float,
    lr: float,
    prefix_lr: dict[str, float] | None = None,
) -> list[dict]:
    """AdamW groups: weight decay on matrices only, and a learning rate per name prefix.

    Biases, norms, MSFE's mixing logits and the learned "missing modality" embeddings are not
    shrunk towards zero (for the mixing logits that would pull every w_i back to uniform and
    hide which time scale matters). ``prefix_lr`` gives parameters whose name starts with a
    prefix their own rate (a fresh projector next to a LoRA adapter learns faster); the
    schedule scales every group alike.
    """
    prefix_lr = prefix_lr or {}
    # The two groups every run has (decayed first): a checkpoint's optimizer state is by index.
    groups: dict[tuple[bool, float], list] = {(True, lr): [], (False, lr): []}
    for name, p in model.named_parameters():
        if p.requires_grad:
            rate = next((r for pre, r in prefix_lr.items() if name.startswith(pre)), lr)
            groups.setdefault((p.ndim >= 2, rate), []).append(p)
    return [
        {"params": ps, "weight_decay": weight_decay if decay else 0.0, "lr": rate}
        for (decay, rate), ps in sorted(groups.items(), key=lambda kv: not kv[0][0])
        if ps or rate == lr
    ]


def make_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, num_processes: int = 1
):
    """transformers' linear warm-up then cosine decay to zero, in optimizer steps.

    A prepared scheduler is stepped once per process at every optimizer step (accelerate's
    convention when batches are not split), so its lengths are counted that many times.
    """
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(
        optimizer, warmup_steps * num_processes, total_steps * num_processes
    )


def _trainable_keys(model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


class Engine:
    """One training run: refusals and the accelerator first, then :meth:`fit`.

    Constructing it checks the output folder (a run there needs ``resume``; a resume needs an
    intact checkpoint of the same config) before the recipe spends time loading data.
    """

    def __init__(
        self,
        loop: LoopConfig,
        run_dict: dict[str, Any],
        fingerprint: Callable[[dict], dict],
        resume: bool = False,
    ) -> None:
        self.loop = loop
        self.run_dict = json.loads(json.dumps(run_dict))
        self.fingerprint = fingerprint
        # Taken now, before a recipe fills in values from the data (the LLM's stream widths),
        # so that a resume compares like with like.
        self.config_fingerprint = fingerprint(self.run_dict)
        self.resume = resume
        self.out_dir = Path(loop.out_dir)
        self.ckpt_dir = self.out_dir / CHECKPOINT
        # Every rank checks: one rank raising alone would hang the others.
        self.saved = self._check_checkpoint() if resume else None
        if resume:  # a killed run may have left a temporary file behind (its writer is gone)
            remove_stale_temps(self.out_dir)
        if not resume and self.ckpt_dir.exists():
            raise EsvaError(
                "output directory already holds a run; pass --resume to continue it or choose "
                "another --out",
                self.out_dir,
            )
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, set_seed

        if loop.threads:
            torch.set_num_threads(loop.threads)
        ddp = DistributedDataParallelKwargs(find_unused_parameters=loop.find_unused_parameters)
        self.accelerator = Accelerator(
            cpu=loop.cpu, gradient_accumulation_steps=loop.grad_accum, kwargs_handlers=[ddp]
        )
        self.main = self.accelerator.is_main_process
        set_seed(loop.seed)

    # --- checkpoints ----------------------------------------------------------------------
    def _check_checkpoint(self) -> dict:
        path = self.ckpt_dir / TRAINER_STATE
        if not path.exists():
            raise EsvaError(
                "nothing to resume: no checkpoint in the output directory", self.out_dir
            )
        saved = read_json(path)
        if not isinstance(saved, dict) or not {"state", "fingerprint", "files"} <= set(saved):
            raise EsvaError(
                "checkpoint state has no state/fingerprint/files (not written by this esva)", path
            )
        if self.fingerprint(saved["fingerprint"]) != self.config_fingerprint:
            raise EsvaError(
                "cannot resume: the checkpoint was made with a different config", self.ckpt_dir
            )
        files = saved["files"]
        present = {
            str(p.relative_to(self.ckpt_dir))
            for p in self.ckpt_dir.rglob("*")
            if p.is_file() and p.name != TRAINER_STATE
        }
        for name in sorted(present - set(files)):
            raise EsvaError(
                "checkpoint file was not written with the checkpoint", self.ckpt_dir / name
            )
        for name, digest in sorted(files.items()):
            if name not in present:
                raise EsvaError("checkpoint file is missing", self.ckpt_dir / name)
            if file_sha256(self.ckpt_dir / name) != digest:
                raise EsvaError(
                    "checkpoint file changed since it was written (sha256 differs)",
                    self.ckpt_dir / name,
                )
        return saved

    def _save_checkpoint(self, state: dict) -> None:
        """accelerate's save_state into a temporary directory, renamed into place as a whole."""
        acc, ckpt_dir = self.accelerator, self.ckpt_dir
        tmp = ckpt_dir.with_name(f".{ckpt_dir.name}.tmp")
        if self.main and tmp.exists():
            shutil.rmtree(tmp)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))  # every rank writes its own RNG state file
        acc.wait_for_everyone()
        if self.main:
            files = {
                str(p.relative_to(tmp)): file_sha256(p)
                for p in sorted(tmp.rglob("*"))
                if p.is_file()
            }
            write_json(
                tmp / TRAINER_STATE,
                {"state": state, "fingerprint": self.config_fingerprint, "files": files},
            )
            old = ckpt_dir.with_name(f".{ckpt_dir.name}.old")
            if ckpt_dir.exists():
                os.replace(ckpt_dir, old)
            os.replace(tmp, ckpt_dir)
            shutil.rmtree(old, ignore_errors=True)
            with atomic_write(self.out_dir / STEPS) as handle:
                handle.writelines(json.dumps(s) + "\n" for s in state["steps"])
        acc.wait_for_everyone()

    def _check_checkpoint_keys(self, trainable: set[str]) -> None:
        """The checkpoint must hold exactly the trainable weights (a lenient load would not say)."""
        from safetensors import safe_open

        path = self.ckpt_dir / "model.safetensors"
        if not path.exists():
            raise EsvaError("checkpoint has no model.safetensors", self.ckpt_dir)
        with safe_open(str(path), framework="pt") as f:
            saved = {k.removeprefix("module.") for k in f.keys()}  # noqa: SIM118
        if saved != {k.removeprefix("module.") for k in trainable}:
            raise EsvaError("checkpoint weights do not match the model's trainable weights", path)

    # --- the loop -------------------------------------------------------------------------
    def fit(
        self,
        model: torch.nn.Module,
        loader,
        sampler,
        loss_fn: Callable[[torch.nn.Module, Any], Step],
        validate: Callable[[torch.nn.Module, Accelerator], tuple[dict, float | None]],
        save_best: Callable[[torch.nn.Module, Path], None],
        loss_key: str,
        val_keys: tuple[str, ...] = (),
        prefix_lr: dict[str, float] | None = None,
    ) -> TrainResult:
        """Train ``model``; returns the best epoch, its score and the per-epoch records.

        ``loss_fn(model, batch)`` gives a :class:`Step`; ``validate(model, accelerator)`` a
        record of ``val_*`` entries and the score to maximise (None: the score is then the
        negative training loss ``loss_key``); ``save_best(unwrapped_model, directory)`` writes
        the best model. A validation loader to shard across ranks goes through
        ``engine.accelerator.prepare`` before this. ``prefix_lr``: see :func:`param_groups`.
        """
        loop, acc = self.loop, self.accelerator
        main = self.main
        trainable = _trainable_keys(model)
        optimizer = torch.optim.AdamW(
            param_groups(model, loop.weight_decay, loop.lr, prefix_lr), lr=loop.lr
        )
        per_rank = math.ceil(len(loader) / acc.num_processes)
        steps_per_epoch = math.ceil(per_rank / loop.grad_accum)
        total = max(1, steps_per_epoch * loop.epochs)
        warmup = max(1, round(loop.warmup_epochs * steps_per_epoch + loop.warmup_share * total))
        scheduler = make_scheduler(optimizer, warmup, total, acc.num_processes)
        model, optimizer, loader, scheduler = acc.prepare(model, optimizer, loader, scheduler)
        unwrapped = acc.unwrap_model(model)

        if loop.trainable_only:

            def keep_trainable(models, weights, _output_dir) -> None:
                for m, w in zip(models, weights, strict=True):
                    keys = _trainable_keys(m)
                    for k in [k for k in w if k not in keys]:
                        del w[k]

            acc.register_save_state_pre_hook(keep_trainable)

        state: dict[str, Any] = {
            "epoch": 0,
            "batch": 0,  # batches of the current epoch already trained
            "step": 0,  # optimizer steps so far
            "sums": {},  # per-epoch sums of the loss logs, and "batches"
            "best_score": -math.inf,
            "best_epoch": 0,
            "bad_epochs": 0,
            "history": [],
            "steps": [],
        }
        if self.saved is not None:
            if loop.trainable_only:
                self._check_checkpoint_keys(trainable)
            # Without the frozen weights in it, the load must not insist on every key.
            acc.load_state(str(self.ckpt_dir), strict=not loop.trainable_only)
            state = self.saved["state"]
        acc.wait_for_everyone()
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.out_dir / "run_config.json", self.run_dict)

        started = time.perf_counter()
        progress = EpochProgress(main and loop.progress, loss_key, val_keys)
        for epoch in range(state["epoch"], loop.epochs):
            if loop.patience is not None and state["bad_epochs"] >= loop.patience:
                break
            t0 = time.perf_counter()
            model.train()
            sampler.set_epoch(epoch)
            loader.set_epoch(epoch)
            done = state["batch"]
            batches = acc.skip_first_batches(loader, done) if done else loader
            progress.start(f"epoch {epoch + 1}/{loop.epochs}", len(loader), done)
            for batch in batches:
                with acc.accumulate(model):
                    step = loss_fn(model, batch)
                    acc.backward(step.loss)
                    if acc.sync_gradients and loop.grad_clip:
                        acc.clip_grad_norm_(model.parameters(), loop.grad_clip)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                loss = float(step.loss.detach())
                state["batch"] += 1
                sums = state["sums"]
                for k, v in step.logs.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                sums["batches"] = sums.get("batches", 0) + 1
                progress.advance(loss)
                if acc.sync_gradients:
                    state["step"] += 1
                    state["steps"].append(
                        {"step": state["step"], "epoch": epoch + 1, "loss": loss, **step.info}
                    )
                    due = loop.checkpoint_every and state["step"] % loop.checkpoint_every == 0
                    if due and state["batch"] < len(loader):  # the epoch-end one follows anyway
                        self._save_checkpoint(state)
            progress.stop()

            n = max(1, state["sums"].get("batches", 0))
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                **{f"train_{k}": v / n for k, v in state["sums"].items() if k != "batches"},
                "lr": scheduler.get_last_lr()[0],
            }
            extra, score = validate(model, acc)
            record.update(extra)
            if score is None:  # no validation data: the training loss decides
                score = -record[loss_key]
            record["seconds"] = time.perf_counter() - t0
            improved = score > state["best_score"]
            if improved:
                state.update(best_score=score, best_epoch=epoch + 1, bad_epochs=0)
            else:
                state["bad_epochs"] += 1
            state.update(epoch=epoch + 1, batch=0, sums={})
            state["history"].append(record)
            if main:
                if improved:
                    save_best(unwrapped, self.out_dir / BEST)
                with atomic_write(self.out_dir / METRICS) as handle:
                    handle.writelines(json.dumps(r) + "\n" for r in state["history"])
                progress.log(record, improved)
            self._save_checkpoint(state)
        acc.wait_for_everyone()
        seconds = time.perf_counter() - started
        # Each rank records the hash of its weights: under DDP they must all be identical.
        write_json(
            self.out_dir / f"rank{acc.process_index}.json",
            {
                "weights_sha256": state_dict_sha256(unwrapped.state_dict()),
                "process_index": acc.process_index,
                "num_processes": acc.num_processes,
                "epochs_run": state["epoch"],
            },
        )
        acc.wait_for_everyone()
        if state["best_epoch"] == 0:
            raise EsvaError("training produced no model (zero epochs run)", self.out_dir)
        return TrainResult(
            self.out_dir,
            self.out_dir / BEST,
            state["best_epoch"],
            state["best_score"],
            state["epoch"],
            state["history"],
            seconds,
            main,
        )
