"""The ``explain-adapter`` recipe: the explanation adapter of ``esva explain`` on the one engine.

SmolLM2-135M-Instruct + feature projectors + LoRA (:class:`~esva.llm.model.EmotionLLM`) tuned on
two tasks, from clips measured exactly as ``esva explain`` measures them (the recogniser's
answer, the voice and face cues, the adapter's feature streams):

- **recognition**: the class word from the clip alone (feature tokens + the cues in words, no
  recogniser answer: :func:`esva.llm.adapter.recognition_prompt`), one sample per clip with a
  feature stream;
- **reasoning**: sentences composed from the measured cues (true by construction, each one
  checked: :func:`esva.llm.adapter.reasoning_target`) after the recogniser's answer in the
  prompt ``esva explain`` uses, for a seeded ``data.reasoning`` share of the clips.

Data (``data.root``): a measures folder, as the data-preparation step of
``benchmarks/train_explain_adapter.py`` writes it: ``labels.csv`` (name, discrete, speaker,
split[, corpus]) and per clip ``<name>.json`` (the recogniser's ``head`` probabilities and
``head_label``, the ``cues``) and ``<name>.npz`` (one mean frame per adapter stream). Measuring
runs the recogniser (an app), so it stays in the benchmark; this recipe only reads the records.

The engine (:mod:`esva.recipes.engine`) runs the loop: batches of one kind each (the same
streams in every prompt), in an order that depends only on (seed, epoch) so a resume is exact;
the projector learns at ``train.projector_lr``, LoRA at ``train.lr``; checkpoints hold only the
trainable weights. Each epoch's validation (the ``val`` speakers) scores the LM's second opinion
alone and fused with the recogniser, ``p_head · p_LM^w``, at every ``data.weights`` value; the
best epoch (``train.monitor``) is written as the adapter folder ``esva explain --adapter`` loads
(:func:`esva.llm.adapter.save_adapter`), its ``lm_weight`` the validated w.

Config: ``configs/explain_adapter.yaml`` (``recipe: explain-adapter``).
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from esva.errors import EsvaError
from esva.llm.adapter import (
    ADAPTER_FORMAT,
    STREAM_DIMS,
    class_logprobs,
    fuse_with_lm,
    lm_distribution,
    reasoning_target,
    recognition_prompt,
    save_adapter,
    standardize,
)
from esva.llm.model import EmotionLLM, EmotionLLMConfig
from esva.recipes.config import TRAIN_LIMITS, SectionedRunConfig
from esva.recipes.engine import Engine, LoopConfig, TrainResult
from esva.recipes.train_llm import lm_step
from esva.settings import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    SHARE,
)

RECIPE = "explain-adapter"
LABELS = "labels.csv"
MONITORS = ("lm_weighted_f1", "fused_weighted_f1", "lm_nll")
STREAM_WORDS = {
    "voice": "whisper-tiny layer 2 frames (the default recogniser's)",
    "face": "face expert 8-class distribution, classes sorted by name",
}
# The shipped adapter's model settings; a config's ``model`` section overrides them key by key.
MODEL_DEFAULTS: dict[str, Any] = {
    "streams": dict(STREAM_DIMS),
    "tokens": 1,
    "lora": {"r": 8, "alpha": 16, "dropout": 0.05},
    "max_length": 512,
    "max_new_tokens": 48,
    "autocast": "bfloat16",  # training passes only; the saved adapter runs in float32
}


@dataclass
class ExplainDataConfig:
    root: str = "measures"  # the measures folder (labels.csv + <name>.json/.npz per clip)
    labels: str = LABELS
    classes: list[str] | None = None  # default: the recogniser's classes, in its order
    reasoning: float = 0.25  # share of the training clips that also get a reasoning sample
    train_split: str = "train"
    val_split: str = "val"  # speakers the LM weight (and the best epoch) are chosen on
    weights: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 1.0, 2.0])

    LIMITS: ClassVar[dict[str, Any]] = {"reasoning": SHARE}

    def __post_init__(self) -> None:
        self.weights = [float(w) for w in self.weights]
        if not self.weights or any(not math.isfinite(w) or w < 0 for w in self.weights):
            raise EsvaError(f"weights must be finite numbers >= 0, got {self.weights}")


@dataclass
class ExplainTrainConfig:
    epochs: int = 1
    batch_size: int = 8
    lr: float = 3e-4  # LoRA
    projector_lr: float = 1e-3  # the fresh projector learns faster
    weight_decay: float = 0.01  # matrices only (the engine's rule)
    warmup: float = 0.1  # share of the optimizer steps spent warming up (then cosine)
    grad_clip: float = 1.0
    grad_accum: int = 1
    seed: int = 0
    checkpoint_every: int = 0  # optimizer steps between mid-epoch checkpoints (0: epochs only)
    monitor: str = "lm_weighted_f1"  # val score of the best epoch: lm_* alone, or fused
    threads: int | None = 1  # torch CPU threads (None: torch's default)
    out_dir: str = "runs/explain_adapter"
    cpu: bool = False
    progress: bool = True

    LIMITS: ClassVar[dict[str, Any]] = {
        **TRAIN_LIMITS,
        "projector_lr": POSITIVE,
        "warmup": SHARE,
        "grad_accum": AT_LEAST_ONE,
        "monitor": MONITORS,
        "threads": AT_LEAST_ONE,
        "weight_decay": NON_NEGATIVE,
    }


@dataclass
class ExplainRunConfig(SectionedRunConfig):
    model: EmotionLLMConfig
    data: ExplainDataConfig = field(default_factory=ExplainDataConfig)
    train: ExplainTrainConfig = field(default_factory=ExplainTrainConfig)

    @classmethod
    def from_dict(cls, raw: Any, source: str | Path | None = None) -> ExplainRunConfig:
        from esva.llm.conclude import SYSTEM

        sections = (None, ExplainDataConfig, ExplainTrainConfig)
        given, data, train = cls.read_sections(raw, source, "explain-adapter", *sections)
        model = {**MODEL_DEFAULTS, "system_prompt": SYSTEM, **given}
        if isinstance(given.get("lora"), dict):
            model["lora"] = {**MODEL_DEFAULTS["lora"], **given["lora"]}
        config = EmotionLLMConfig.from_dict(model, source)
        if config.streams != STREAM_DIMS:
            raise EsvaError(
                f"model.streams must be the measured streams {STREAM_DIMS}, got {config.streams}",
                source,
            )
        return cls(config, data, train)

    def resolve_paths(self, folder: Path) -> None:
        if not Path(self.data.root).is_absolute():
            self.data.root = str((folder / self.data.root).resolve())


# ----------------------------------------------------------------------------- the records


@dataclass
class Measures:
    """The measured clips: ``records[name]`` (label, head, head_label, cues, features)."""

    records: dict[str, dict]
    splits: dict[str, list[str]]  # split name -> clip names, in the table's order
    corpus: dict[str, str]  # clip -> corpus (the table's column, else the speaker's prefix)
    classes: list[str]


def cue_set(raw: Mapping[str, Any]):
    """A record's ``cues`` as the :class:`~esva.llm.cues.ClipCueSet` ``esva explain`` measured."""
    from esva.llm.cues import ClipCueSet, FaceTrackCue, VoiceCue

    face = FaceTrackCue(**raw["face"]) if raw.get("face") else None
    return ClipCueSet(
        voice=[VoiceCue(**c) for c in raw.get("voice") or []],
        voice_reference=raw.get("voice_reference"),
        face=face,
        transcript=None,
    )


def read_record(root: Path, name: str) -> dict:
    path = root / f"{name}.json"
    if not path.exists() or not (root / f"{name}.npz").exists():
        raise EsvaError(f"clip {name!r} has no measurement (<name>.json + .npz)", root)
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
        with np.load(root / f"{name}.npz") as z:
            rec["features"] = {k: z[k] for k in z.files}
    except (ValueError, OSError) as exc:
        raise EsvaError(f"unreadable measurement ({' '.join(str(exc).split())})", path) from None
    if not isinstance(rec, dict) or not isinstance(rec.get("head"), dict) or "cues" not in rec:
        raise EsvaError("a measurement needs 'head' probabilities and 'cues'", path)
    for stream, x in rec["features"].items():
        if stream not in STREAM_DIMS or x.ndim != 2 or x.shape[1] != STREAM_DIMS[stream]:
            raise EsvaError(f"feature {stream!r} of shape {x.shape} is not an adapter stream", path)
    return rec


def load_measures(data: ExplainDataConfig) -> Measures:
    """The table's clips of the train and validation splits (and any other split), read."""
    import csv

    from esva.data.clip_table import read_clip_table

    root = Path(data.root)
    if not root.is_dir():
        raise EsvaError("measures folder not found", root)
    clips = read_clip_table(root / data.labels, data.classes)
    with open(root / data.labels, newline="", encoding="utf-8") as handle:
        corpus_col = {
            r["name"].strip(): (r.get("corpus") or "").strip() for r in csv.DictReader(handle)
        }
    records, splits, corpus = {}, {}, {}
    for c in clips:
        if not c.label:
            continue
        rec = read_record(root, c.name)
        rec["label"] = c.label
        records[c.name] = rec
        splits.setdefault(c.split or "", []).append(c.name)
        corpus[c.name] = corpus_col.get(c.name) or (c.speaker or "").split(":")[0]
    train = splits.get(data.train_split, [])
    if not train:
        raise EsvaError(f"no labelled clips of split {data.train_split!r}", root / data.labels)
    classes = list(data.classes or records[train[0]]["head"])
    for name, rec in records.items():
        if list(rec["head"]) != classes:
            raise EsvaError(
                f"clip {name!r}: the recogniser's classes {list(rec['head'])} are not {classes}",
                root,
            )
        if rec["label"] not in classes:
            raise EsvaError(f"clip {name!r}: label {rec['label']!r} not in {classes}", root)
    return Measures(records, splits, corpus, classes)


def feature_stats(records: Mapping[str, dict], names: Sequence[str]) -> dict[str, tuple]:
    """Each stream's mean and std (floored at 1e-3) over the training clips' mean frames."""
    stats = {}
    for stream in STREAM_DIMS:
        rows = [
            records[n]["features"][stream][0] for n in names if stream in records[n]["features"]
        ]
        if not rows:
            continue
        x = np.stack(rows).astype(np.float64)
        stats[stream] = (
            x.mean(axis=0).astype(np.float32),
            np.maximum(x.std(axis=0), 1e-3).astype(np.float32),
        )
    return stats


# ----------------------------------------------------------------------------- samples, batches


@dataclass(frozen=True)
class AdapterSample:
    kind: str  # "voice", "face", "face+voice" (recognition) or "reason"
    name: str
    prompt: str
    target: str


def build_samples(
    records: Mapping[str, dict],
    names: Sequence[str],
    classes: Sequence[str],
    share: float,
    seed: int,
) -> list[AdapterSample]:
    """The training samples, drawn once from ``seed``: every epoch trains the same list."""
    from esva.llm.conclude import lead_words, prompt_messages

    rng = random.Random(seed)
    mods = ("voice", "face", "words")
    samples = []
    for n in names:
        rec = records[n]
        cues = cue_set(rec["cues"])
        streams = sorted(rec["features"])
        if streams:
            prompt = recognition_prompt(streams, cues, classes)
            samples.append(AdapterSample("+".join(streams), n, prompt, rec["label"]))
        if rng.random() < share and (cues.voice or cues.face is not None):
            user = prompt_messages(cues, rec["head_label"], rec["head"], "reason", mods)[1]
            # The conclusion is not in the target: esva explain force-decodes it after the
            # reasoning, so the LM learns to stop (end of turn) once the cues are said.
            target = " ".join(reasoning_target(cues, lead_words(cues, mods), mods, rng))
            samples.append(AdapterSample("reason", n, user["content"], target))
    return samples


class KindBatches(Sampler[list[int]]):
    """Batches of one sample kind each, in an order that depends only on (seed, epoch).

    Each epoch permutes the samples, fills one batch per kind in that order (a kind's last
    batch may be short) and shuffles the batches: the number of batches never changes.
    """

    def __init__(self, kinds: Sequence[str], batch_size: int, seed: int) -> None:
        self.kinds, self.batch_size, self.seed, self.epoch = list(kinds), batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(math.ceil(k / self.batch_size) for k in Counter(self.kinds).values())

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        open_: dict[str, list[int]] = {}
        batches = []
        for i in rng.permutation(len(self.kinds)).tolist():
            group = open_.setdefault(self.kinds[i], [])
            group.append(i)
            if len(group) == self.batch_size:
                batches.append(open_.pop(self.kinds[i]))
        batches.extend(g for g in open_.values() if g)
        return iter([batches[j] for j in rng.permutation(len(batches)).tolist()])


class _SampleSet(Dataset):
    def __init__(self, samples: Sequence[AdapterSample]) -> None:
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> AdapterSample:
        return self.samples[i]


def collate(batch: Sequence[AdapterSample], records: Mapping[str, dict], stats) -> dict:
    """``features`` (z-scored, one token each; none for reasoning), ``prompts``, ``targets``."""
    features: dict = {}
    if batch[0].kind != "reason":
        per = [standardize(records[s.name]["features"], stats) for s in batch]
        features = {
            k: (torch.cat([p[k][0] for p in per]), torch.cat([p[k][1] for p in per]))
            for k in per[0]
        }
    return {
        "names": [s.name for s in batch],
        "prompts": [s.prompt for s in batch],
        "targets": [s.target for s in batch],
        "features": features,
    }


# ----------------------------------------------------------------------------- scoring


@torch.no_grad()
def lm_opinions(model, records, names, classes, stats) -> dict[str, dict[str, float]]:
    """``{clip: the LM's distribution}`` from the clip alone (clips without a stream: none)."""
    out = {}
    for n in names:
        rec = records[n]
        if not rec["features"]:
            continue
        feats = standardize(rec["features"], stats)
        prompt = recognition_prompt(sorted(feats), cue_set(rec["cues"]), classes)
        out[n] = lm_distribution(class_logprobs(model, feats, prompt, classes))
    return out


def _wf1(y, pred, classes) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, pred, average="weighted", labels=list(classes), zero_division=0))


def fused_scores(records, names, lm, weight: float, classes) -> dict[str, Any]:
    """Weighted F1, accuracy and NLL of ``p_head · p_LM^weight`` (the head where no LM)."""
    y, pred, nll = [], [], []
    for n in names:
        head = records[n]["head"]
        p = fuse_with_lm(head, lm[n], weight) if n in lm else head
        y.append(records[n]["label"])
        pred.append(max(p, key=p.get))
        nll.append(-math.log(max(p.get(records[n]["label"], 0.0), 1e-12)))
    return {
        "n": len(names),
        "weighted_f1": _wf1(y, pred, classes),
        "accuracy": float(np.mean([a == b for a, b in zip(y, pred, strict=True)])),
        "nll": float(np.mean(nll)),
    }


def lm_scores(records, names, lm, classes) -> dict[str, Any]:
    """The LM alone on the clips it answered."""
    kept = [n for n in names if n in lm]
    y = [records[n]["label"] for n in kept]
    pred = [max(lm[n], key=lm[n].get) for n in kept]
    nll = [-math.log(max(lm[n].get(records[n]["label"], 0.0), 1e-12)) for n in kept]
    return {
        "n": len(kept),
        "weighted_f1": _wf1(y, pred, classes) if kept else 0.0,
        "accuracy": float(np.mean([a == b for a, b in zip(y, pred, strict=True)])) if kept else 0.0,
        "nll": float(np.mean(nll)) if kept else math.inf,
    }


def choose_weight(per_weight: Mapping[float, Mapping[str, float]]) -> float:
    """The w of the best weighted F1 (to 4 places), then the lowest NLL, then the smallest w."""
    return max(
        per_weight,
        key=lambda w: (round(per_weight[w]["weighted_f1"], 4), -per_weight[w]["nll"], -w),
    )


# ----------------------------------------------------------------------------- the run

_RESUMABLE = {"train": ("epochs", "out_dir", "progress", "threads", "checkpoint_every")}


def _fingerprint(run: dict) -> dict:
    d = json.loads(json.dumps(run))
    for section, keys in _RESUMABLE.items():
        for key in keys:
            d.get(section, {}).pop(key, None)
    return d


def save_best(model: EmotionLLM, directory: Path, stats, meta: Mapping[str, Any]) -> None:
    """The adapter folder, as shipped: the LM runs in float32 at answer time."""
    autocast = model.config.autocast
    model.config.autocast = None
    try:
        save_adapter(model, stats, {**meta, "format": ADAPTER_FORMAT}, directory)
    finally:
        model.config.autocast = autocast


def train(run: ExplainRunConfig, resume: bool = False) -> TrainResult:
    """Tune projectors + LoRA on the measured clips; the best epoch's adapter is ``best/``."""
    tcfg, dcfg = run.train, run.data
    loop = LoopConfig.from_section(
        tcfg, warmup_share=tcfg.warmup, trainable_only=True, find_unused_parameters=True
    )
    engine = Engine(loop, run.to_dict(), _fingerprint, resume)

    m = load_measures(dcfg)
    train_names = m.splits[dcfg.train_split]
    val_names = m.splits.get(dcfg.val_split, [])
    stats = feature_stats(m.records, train_names)
    samples = build_samples(m.records, train_names, m.classes, dcfg.reasoning, tcfg.seed)
    if not samples:
        raise EsvaError("no training samples (no clip has a feature stream or a cue)", dcfg.root)
    kinds = dict(sorted(Counter(s.kind for s in samples).items()))
    batches = KindBatches([s.kind for s in samples], tcfg.batch_size, tcfg.seed)
    loader = DataLoader(
        _SampleSet(samples),
        batch_sampler=batches,
        collate_fn=partial(collate, records=m.records, stats=stats),
        generator=torch.Generator(),  # not the global RNG: a resume's dropout masks match
    )
    model = EmotionLLM.build(run.model)

    meta: dict[str, Any] = {
        "classes": m.classes,
        "lm_weight": 0.0,
        "streams": {s: STREAM_WORDS[s] for s in stats},
        "trained_on": {
            split: dict(sorted(Counter(m.corpus[n] for n in names).items()))
            for split, names in sorted(m.splits.items())
        },
        "training": {"recipe": RECIPE, "samples": len(samples), "kinds": kinds},
    }

    def validate(model: torch.nn.Module, accelerator) -> tuple[dict, float | None]:
        if not val_names:
            return {}, None
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.eval()
        lm = lm_opinions(unwrapped, m.records, val_names, m.classes, stats)
        per_w = {w: fused_scores(m.records, val_names, lm, w, m.classes) for w in dcfg.weights}
        best = choose_weight(per_w)
        alone = lm_scores(m.records, val_names, lm, m.classes)
        head = fused_scores(m.records, val_names, lm, 0.0, m.classes)
        meta["lm_weight"] = best
        meta["validation"] = {str(w): s for w, s in per_w.items()}
        record = {
            "val_lm_weighted_f1": alone["weighted_f1"],
            "val_lm_nll": alone["nll"],
            "val_head_weighted_f1": head["weighted_f1"],
            "val_fused_weighted_f1": per_w[best]["weighted_f1"],
            "val_lm_weight": best,
        }
        score = -alone["nll"] if tcfg.monitor == "lm_nll" else record[f"val_{tcfg.monitor}"]
        return record, score

    return engine.fit(
        model,
        loader,
        batches,
        lm_step,
        validate,
        lambda model, directory: save_best(model, directory, stats, meta),
        loss_key="train_loss",
        val_keys=("val_lm_weighted_f1", "val_fused_weighted_f1", "val_lm_weight"),
        prefix_lr={"projector.": tcfg.projector_lr},
    )


__all__ = [
    "ExplainDataConfig",
    "ExplainRunConfig",
    "ExplainTrainConfig",
    "KindBatches",
    "build_samples",
    "choose_weight",
    "cue_set",
    "feature_stats",
    "fused_scores",
    "lm_opinions",
    "lm_scores",
    "load_measures",
    "train",
]
