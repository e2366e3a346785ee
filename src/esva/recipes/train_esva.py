"""The ESVA training recipe: L = L_align + λ·L_emo (+ μ·L_contrast), Eq. 7.

The data (feature dataset, splits), the model, the per-batch loss, the validation (MER's
weighted F1 on the validation split, by default) and the best-model folder; the loop itself
(accelerate, DDP, AdamW + warm-up/cosine, checkpoints and exact resume, early stopping,
metrics.jsonl) is :mod:`esva.recipes.engine`'s.
"""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from esva.data.clip_table import ClipLabel
from esva.errors import EsvaError
from esva.evaluate.classification import score_classification
from esva.extract.provenance import model_extraction, write_extraction
from esva.hashing import state_dict_sha256
from esva.io import atomic_dir
from esva.model import ESVAModel
from esva.model.inputs import FeatureDataset, collate
from esva.recipes.config import DataConfig, RunConfig
from esva.recipes.engine import (
    BEST,
    CHECKPOINT,
    METRICS,
    Engine,
    LoopConfig,
    Step,
    TrainResult,
    param_groups,
)
from esva.recipes.sampler import EpochSampler

__all__ = [
    "BEST",
    "CHECKPOINT",
    "METRICS",
    "TrainResult",
    "corpus_speaker_groups",
    "make_loader",
    "param_groups",
    "predict_loader",
    "score_predictions",
    "split_clips",
    "train",
    "weights_sha256",
]


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


def corpus_speaker_groups(clips: list[ClipLabel]) -> list[tuple[str, str]]:
    """(corpus, speaker) of each clip for corpus- then speaker-balanced sampling.

    The corpus is the speaker id's prefix before ``:`` (``tess:OAF`` -> ``tess``); a speaker id
    without one is a corpus of its own name's prefix ``""``, and a clip without a speaker
    counts as a speaker of its own.
    """
    out = []
    for clip in clips:
        speaker = clip.speaker or f"clip:{clip.name}"
        corpus = speaker.split(":", 1)[0] if clip.speaker and ":" in clip.speaker else ""
        out.append((corpus, speaker))
    return out


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
        # Its own generator: starting an iterator draws a seed from it, and drawing from the
        # global RNG would make a resumed epoch's dropout masks differ from the original's.
        generator=torch.Generator(),
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
def weights_sha256(model: torch.nn.Module) -> str:
    """A hash of all weights, to compare models across processes or runs bit for bit."""
    return state_dict_sha256(model.state_dict())


def _fingerprint(run: dict) -> dict:
    """What must not change between a run and its resume: everything but the epoch budget,
    where the run folder is (moved or copied) and what only affects speed or reporting."""
    d = json.loads(json.dumps(run))
    for key in ("epochs", "out_dir", "progress", "num_workers", "patience", "checkpoint_every"):
        d["train"].pop(key, None)
    return d


def save_best(model: ESVAModel, directory: Path, run: RunConfig) -> None:
    """The best epoch's model folder (config.json + model.safetensors), loadable by predict.

    Called by the engine on the main process with the unwrapped model; ``run`` is the run's
    config (its data section names the feature store the model was trained on). The folder
    also gets ``extraction.json`` (how the store's features were made: encoders and their
    options, fps, face detector, ASR), written in the same atomic swap, which ``esva predict``
    reads to extract a new file exactly as the training data was.
    """
    extraction = model_extraction(run.data.root, model.config.encoders)
    with atomic_dir(directory) as tmp:
        model.save_pretrained(tmp)
        write_extraction(tmp, extraction)


def train(run: RunConfig, resume: bool = False) -> TrainResult:
    """Train an ESVA model as configured; returns where the best model is and its score."""
    cfg, tcfg = run.model, run.train
    if not cfg.encoders:
        # Remember which stream folders the model was trained on: evaluate/predict read them.
        cfg.encoders = {m: run.data.streams.get(m, m) for m in cfg.modalities}
    # epochs, lr, out_dir, weight_decay, grad_clip, seed, warmup_epochs, checkpoint_every,
    # patience, cpu, progress: from the train section.
    # A batch without a modality leaves its branch without gradient.
    loop = LoopConfig.from_section(tcfg, find_unused_parameters=True)
    engine = Engine(loop, run.to_dict(), _fingerprint, resume)

    dataset = FeatureDataset(Path(run.data.root), cfg, run.data.labels, dict(run.data.streams))
    splits = split_clips(dataset.clips, run.data, tcfg.seed)
    train_set = dataset.subset([c for c in splits["train"] if c.label is not None])
    val_set = dataset.subset(splits["val"]) if splits["val"] else None
    if len(train_set) == 0:
        raise EsvaError("no labelled training clips", Path(run.data.root) / run.data.labels)
    sampler = EpochSampler(
        [train_set.class_index[c.label] for c in train_set.clips],
        tcfg.seed,
        tcfg.balanced_sampling,
        groups=corpus_speaker_groups(train_set.clips) if tcfg.corpus_speaker_balanced else None,
        size=tcfg.epoch_size or None,
    )
    train_loader = make_loader(train_set, tcfg.batch_size, sampler, tcfg.num_workers)
    val_loader = None
    if val_set is not None:
        val_loader = engine.accelerator.prepare(
            make_loader(val_set, tcfg.batch_size, None, tcfg.num_workers)
        )
    model = ESVAModel(cfg)

    def loss_fn(model: torch.nn.Module, batch: dict) -> Step:
        batch.pop("name")
        losses = model(batch).losses
        return Step(losses["total"], {k: float(v.detach()) for k, v in losses.items()})

    def validate(model: torch.nn.Module, accelerator: Accelerator) -> tuple[dict, float | None]:
        record: dict = {}
        score = None
        if val_loader is not None:
            val = score_predictions(predict_loader(model, val_loader, accelerator), cfg.classes)
            record.update({f"val_{k}": v for k, v in val.items()})
            score = val.get(tcfg.monitor, -math.inf)
        if (weights := accelerator.unwrap_model(model).msfe_branch_weights()) is not None:
            record["msfe_weights"] = weights
        return record, score

    return engine.fit(
        model,
        train_loader,
        sampler,
        loss_fn,
        validate,
        partial(save_best, run=run),
        loss_key="train_total",
        val_keys=("val_weighted_f1", "val_accuracy", "val_loss"),
    )
