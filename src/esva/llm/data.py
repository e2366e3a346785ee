"""Instruction data for :class:`~esva.llm.EmotionLLM`: a feature store + MERR captions -> samples.

Every labelled clip gives up to two samples, Emotion-LLaMA's two tasks:

- *recognition*: the recognition prompt (feature placeholders, the subtitle, the label list)
  -> the label word;
- *reasoning*: the reasoning prompt -> the clip's MERR fine caption (``smp_reason_caption``),
  which ends in the label.

``recognition`` and ``reasoning`` in :class:`LLMDataConfig` are the shares of clips that get
each sample (drawn once from the seed, so an epoch is always the same list of samples); the
sampler shuffles the mixed list each epoch.

Features come from a feature store (``esva extract``): ``streams`` maps each LM feature stream
(a lower-case word: it becomes the ``<AudioHere>`` placeholder) to the store folder(s) that hold
it; ``"whisper-tiny+prosody"`` joins two encoders frame by frame, on the first one's frame rate
and the container clock (:func:`esva.model.inputs.combine`). :func:`lm_features` builds the
same streams for a raw media file with the same encoders (``esva explain``). With
``standardize`` every dimension is z-scored with the training clips' statistics
(:func:`feature_stats`), which travel with the model.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from esva.data.clip_table import ClipLabel
from esva.data.streams import StreamFeatures, clip_path, combine, read_header, read_stream
from esva.errors import EsvaError
from esva.llm.prompt import build_prompt

TASKS: tuple[str, ...] = ("recognition", "reasoning")
META_FORMAT = "esva-llm-data/1"


@dataclass
class LLMDataConfig:
    """Where the features, labels, captions and transcripts of an instruction dataset are."""

    root: str = "data"  # feature store (or a folder of links to several stores' folders)
    labels: str = "labels.csv"  # clip table inside root: name,discrete[,speaker,split]
    # LM stream -> store folder(s); the stream name becomes the prompt placeholder.
    streams: dict[str, str] = field(default_factory=lambda: {"audio": "whisper-tiny"})
    # Superseded: the store's extract.json records each encoder's options, and the model
    # folder's extraction.json carries them to `esva explain`. Kept so older configs load.
    encoder_options: dict[str, dict] = field(default_factory=dict)
    classes: list[str] | None = None  # recognition label set; default: the table's labels
    merr: str | None = None  # MERR fine-grained JSON; None: built from the cues below
    cues: dict[str, str | None] = field(
        default_factory=lambda: {"voice": "prosody", "face": "fer-cnn"}
    )
    transcripts: str | None = None  # name,sentence CSV (default: the store's ASR transcripts)
    subtitles: bool = True  # put the transcript in the prompt, as Emotion-LLaMA does
    # z-score every feature dimension with the training clips' mean and std (stored with the
    # model): raw streams mix scales (prosody's energy in dB is ~-50, Whisper's ~1), and the
    # projector is a single linear layer.
    standardize: bool = True
    recognition: float = 1.0  # share of clips with a recognition sample
    reasoning: float = 1.0  # share of clips with a reasoning sample (needs a caption)
    # Splits, as esva.recipes.config.DataConfig: a `split` column, or held-out speakers.
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    val_fraction: float = 0.15
    val_limit: int | None = None  # score at most this many validation clips per epoch

    def __post_init__(self) -> None:
        for name in self.streams:
            if not (name.isalpha() and name.islower()):
                raise EsvaError(
                    f"LM stream names must be lower-case words (they become <{name}Here>), "
                    f"got {name!r}"
                )
        for share in (self.recognition, self.reasoning):
            if not 0.0 <= share <= 1.0:
                raise EsvaError(f"recognition/reasoning shares must be in [0, 1], got {share}")


@dataclass
class Sample:
    clip: int  # index into the dataset's clips
    task: str  # "recognition" | "reasoning"


def read_transcripts(path: str | Path) -> dict[str, str]:
    """``{name: sentence}`` from a ``name,sentence`` CSV (MER2023's transcription files)."""
    from esva.tables import read_table

    rows = read_table(path, ("name", "sentence"))
    return {name: row["sentence"].strip() for name, row in rows.items() if row["sentence"].strip()}


def store_transcripts(root: str | Path, names: Sequence[str]) -> dict[str, str]:
    """Transcripts the store's manifest recorded (ASR or the corpus's text) for ``names``."""
    from esva.extract.feature_store import FeatureStore

    store = FeatureStore(root)
    out = {}
    for name in names:
        text = ((store.entry(name) or {}).get("info") or {}).get("transcript")
        if text:
            out[name] = text
    return out


def load_streams(
    root: Path, name: str, streams: Mapping[str, str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{stream: (x (T,D), mask (T,))}`` of one clip; streams without files are left out."""
    out = {}
    for stream, spec in streams.items():
        paths = [clip_path(root, folder, name) for folder in spec.split("+")]
        if not all(p.exists() for p in paths):
            continue
        parts = [read_stream(p) for p in paths]
        x, m = combine(parts, parts[0].fps)
        if m.any():
            out[stream] = (x, m)
    return out


Stats = dict[str, tuple[np.ndarray, np.ndarray]]  # stream -> (mean (D,), std (D,))


def feature_stats(root: Path, names: Sequence[str], streams: Mapping[str, str]) -> Stats:
    """Per-dimension mean and std of each stream over the valid frames of ``names``."""
    sums: dict[str, list] = {}
    for name in names:
        for stream, (x, m) in load_streams(root, name, streams).items():
            valid = x[m].astype(np.float64)
            acc = sums.setdefault(stream, [0, 0.0, 0.0])
            acc[0] += len(valid)
            acc[1] = acc[1] + valid.sum(axis=0)
            acc[2] = acc[2] + (valid**2).sum(axis=0)
    stats = {}
    for stream, (n, s1, s2) in sums.items():
        mean = s1 / n
        std = np.sqrt(np.maximum(s2 / n - mean**2, 0.0))
        # A constant dimension (e.g. a prosody column a corpus never uses) is only centred.
        std = np.where(std < 1e-6, 1.0, std)
        stats[stream] = (mean.astype(np.float32), std.astype(np.float32))
    return stats


def standardize(
    features: dict[str, tuple[np.ndarray, np.ndarray]], stats: Stats | None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """z-score the valid frames of each stream that has statistics; padding stays zero."""
    if not stats:
        return features
    out = {}
    for stream, (x, m) in features.items():
        if stream in stats:
            mean, std = stats[stream]
            x = np.where(m[:, None], (x - mean) / std, 0.0).astype(np.float32)
        out[stream] = (x, m)
    return out


def stats_to_json(stats: Stats | None) -> dict | None:
    if not stats:
        return None
    return {s: {"mean": m.tolist(), "std": d.tolist()} for s, (m, d) in stats.items()}


def stats_from_json(data: Mapping | None) -> Stats | None:
    if not data:
        return None
    return {
        s: (np.asarray(v["mean"], np.float32), np.asarray(v["std"], np.float32))
        for s, v in data.items()
    }


def stream_dims(root: Path, names: Sequence[str], streams: Mapping[str, str]) -> dict[str, int]:
    """Width of each stream, from the first clip that has its files (headers only)."""
    dims: dict[str, int] = {}
    for stream, spec in streams.items():
        folders = spec.split("+")
        for folder in folders:
            if not (root / folder).is_dir():
                raise EsvaError(f"no {folder!r} folder for stream {stream!r}", root)
        for name in names:
            paths = [clip_path(root, folder, name) for folder in folders]
            if all(p.exists() for p in paths):
                dims[stream] = sum(read_header(p)[0][1] for p in paths)
                break
        else:
            raise EsvaError(f"no clip has the {spec!r} files of stream {stream!r}", root)
    return dims


class InstructionDataset(Dataset):
    """Mixed recognition + reasoning samples over clips of a feature store."""

    def __init__(
        self,
        root: str | Path,
        config: LLMDataConfig,
        clips: Sequence[ClipLabel],
        classes: Sequence[str],
        captions: Mapping[str, str] | None = None,
        transcripts: Mapping[str, str] | None = None,
        seed: int = 0,
        tasks: Sequence[str] = TASKS,
        stats: Stats | None = None,
    ) -> None:
        self.root = Path(root)
        self.stats = stats
        self.config = config
        self.clips = list(clips)
        self.classes = list(classes)
        self.captions = dict(captions or {})
        self.transcripts = dict(transcripts or {})
        unknown = sorted({c.label for c in self.clips if c.label and c.label not in self.classes})
        if unknown:
            raise EsvaError(f"labels {unknown} are not in the classes {self.classes}", self.root)
        rng = random.Random(seed)
        self.samples: list[Sample] = []
        for i, clip in enumerate(self.clips):
            # One draw per clip and task, whatever the shares: changing one share does not
            # reshuffle the other task's clips.
            draws = {task: rng.random() for task in TASKS}
            if "recognition" in tasks and clip.label and draws["recognition"] < config.recognition:
                self.samples.append(Sample(i, "recognition"))
            if (
                "reasoning" in tasks
                and clip.name in self.captions
                and draws["reasoning"] < config.reasoning
            ):
                self.samples.append(Sample(i, "reasoning"))

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        """A class index per sample (for :class:`esva.recipes.sampler.EpochSampler`)."""
        index = {c: i for i, c in enumerate(self.classes)}
        return [index.get(self.clips[s.clip].label or "", 0) for s in self.samples]

    def sentence(self, name: str) -> str | None:
        return self.transcripts.get(name) if self.config.subtitles else None

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        clip = self.clips[sample.clip]
        features = standardize(load_streams(self.root, clip.name, self.config.streams), self.stats)
        if not features:
            raise EsvaError(f"clip {clip.name!r} has no usable feature file", self.root)
        target = clip.label if sample.task == "recognition" else self.captions.get(clip.name)
        return {
            "name": clip.name,
            "task": sample.task,
            "label": clip.label,
            "sentence": self.sentence(clip.name),
            "target": target,
            "features": features,
        }


def collate_instructions(items: Sequence[dict[str, Any]], classes: Sequence[str]) -> dict:
    """Pad a list of samples: ``features = {stream: (x (B,T,D), mask (B,T))}`` + texts.

    ``prompts`` are the user messages (template per sample's task, with the streams that sample
    has); a stream no sample of the batch has is left out.
    """
    streams = list(dict.fromkeys(s for it in items for s in it["features"]))
    features: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for stream in streams:
        present = [it["features"][stream] for it in items if stream in it["features"]]
        t = max(len(x) for x, _ in present)
        d = present[0][0].shape[1]
        x = torch.zeros(len(items), t, d)
        mask = torch.zeros(len(items), t, dtype=torch.bool)
        for i, it in enumerate(items):
            if stream in it["features"]:
                xi, mi = it["features"][stream]
                x[i, : len(xi)] = torch.from_numpy(xi)
                mask[i, : len(mi)] = torch.from_numpy(mi)
        features[stream] = (x, mask)
    prompts = [
        build_prompt(it["task"], list(it["features"]), it["sentence"], classes) for it in items
    ]
    return {
        "names": [it["name"] for it in items],
        "tasks": [it["task"] for it in items],
        "labels": [it["label"] for it in items],
        "targets": [it["target"] for it in items],
        "prompts": prompts,
        "features": features,
    }


# ----------------------------------------------------------------------------- provenance


def data_meta(
    config: LLMDataConfig, classes: Sequence[str], stats: Stats | None = None
) -> dict[str, Any]:
    """What ``esva explain`` needs besides the encoders: the LM streams (stream -> store
    folders), the classes, subtitles and the standardisation. How each folder's features were
    extracted is in the model folder's ``extraction.json`` (esva.extract.provenance)."""
    return {
        "format": META_FORMAT,
        "streams": dict(config.streams),
        "classes": list(classes),
        "subtitles": config.subtitles,
        "standardize": stats_to_json(stats),
        "data": dataclasses.asdict(config),
    }


def lm_features(
    extracted: Mapping[str, StreamFeatures], meta: Mapping[str, Any]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A raw file's extracted streams (per encoder) -> the LM streams of ``meta``, standardised
    as in training, as a batch of one: ``{stream: (x (1,T,D), mask (1,T))}``."""
    arrays = {}
    for stream, spec in meta["streams"].items():
        names = spec.split("+")
        if all(n in extracted for n in names):
            parts = [extracted[n] for n in names]
            x, m = combine(parts, parts[0].fps)
            if m.any():
                arrays[stream] = (x, m)
    arrays = standardize(arrays, stats_from_json(meta.get("standardize")))
    return {
        s: (torch.from_numpy(x)[None], torch.from_numpy(m)[None]) for s, (x, m) in arrays.items()
    }
