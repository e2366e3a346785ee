"""Clips of the explanation adapter: which speakers train, choose settings (validation) and test.

Speakers never cross splits, except Actor_01: the shipped recogniser (RAVDESS actors 01-20)
heard every RAVDESS speaker, so RAVDESS speech only trains, and Actor_01's full audio-video
takes are test clips for the video path, not held-out speakers. The held-out speakers are
TESS's YAF, EMOVO's f3 and m3, every fifth ASED speaker (number % 5 == 0) and MEAD's W011.
Validation: EMOVO f2, m2 and ASED speakers with number % 5 == 1. Caps per speaker and class keep
the CPU build short; the draw is seeded, so the lists are the same on every run.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

CORPORA = {
    "ravdess": "ravdess_speech",
    "tess": "ser_corpora/tess",
    "emovo": "ser_corpora/emovo",
    "ased": "ser_corpora/ased",
}
# Clips per (speaker, class) kept in each split.
CAP = {"train": 3, "val": 3, "test": 3}
TESS_CAP = {"train": 40, "test": 20}  # two speakers only: more clips per speaker
EMOVO_CAP = {"train": 7, "val": 7, "test": 7}  # six speakers
RAVDESS_TO_SER7 = {"calm": "neutral"}
MEAD_TO_SER7 = {"angry": "angry", "disgusted": "disgust", "fear": "fearful", "happy": "happy",
                "neutral": "neutral", "sad": "sad", "surprised": "surprised"}  # fmt: skip


@dataclass(frozen=True)
class Item:
    name: str
    path: Path
    audio: Path | None
    label: str
    corpus: str
    speaker: str
    split: str
    kind: str  # "speech" | "av" | "silent-face"


def _split_of(corpus: str, speaker: str) -> str:
    sid = speaker.split(":")[-1]
    if corpus == "ravdess":
        return "train"
    if corpus == "tess":
        return "test" if sid == "YAF" else "train"
    if corpus == "emovo":
        return {"f3": "test", "m3": "test", "f2": "val", "m2": "val"}.get(sid, "train")
    if corpus == "ased":
        n = int(re.sub(r"\D", "", sid) or 0)
        return {0: "test", 1: "val"}.get(n % 5, "train")
    raise ValueError(corpus)


def speech_items(shared: Path, seed: int = 0) -> list[Item]:
    from esva.data.corpora import load_corpora

    clips = load_corpora({c: shared / f for c, f in CORPORA.items()}, target="ser7")
    groups: dict[tuple, list] = defaultdict(list)
    for clip in clips:
        corpus = clip.extra["corpus"]
        split = _split_of(corpus, clip.speaker)
        groups[(corpus, clip.speaker, clip.label, split)].append(clip)
    rng = random.Random(seed)
    out: list[Item] = []
    for (corpus, speaker, label, split), group in sorted(groups.items()):
        cap = {"tess": TESS_CAP, "emovo": EMOVO_CAP}.get(corpus, CAP)[split]
        group = sorted(group, key=lambda c: c.name)
        for clip in rng.sample(group, min(cap, len(group))):
            path = clip.audio or clip.video
            out.append(Item(clip.name, path, None, label, corpus, speaker, split, "speech"))
    return out


def av_items(shared: Path) -> list[Item]:
    """MEAD (silent faces; contempt has no ser7 class and is left out) and Actor_01's videos
    (all with a sound track: the 02- "video-only" takes carry one too; the full 01- takes test)."""
    out: list[Item] = []
    for path in sorted((shared / "mead_faces").glob("*.mp4")):
        speaker, _, emotion = path.stem.split("_")[:3]
        label = MEAD_TO_SER7.get(emotion)
        if label is None:
            continue
        split = "test" if speaker == "W011" else "train"
        out.append(Item(path.stem, path, None, label, "mead", f"mead:{speaker}", split,
                        "silent-face"))  # fmt: skip
    emotions = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                "06": "fearful", "07": "disgust", "08": "surprised"}  # fmt: skip
    for path in sorted((shared / "ravdess_av" / "Actor_01").glob("*.mp4")):
        fields = path.stem.split("-")
        label = emotions[fields[2]]
        label = RAVDESS_TO_SER7.get(label, label)
        full = fields[0] == "01"
        out.append(Item(path.stem, path, None, label, "ravdess-av", "ravdess:Actor_01",
                        "test" if full else "train", "av"))  # fmt: skip
    return out


def all_items(shared: Path, seed: int = 0) -> list[Item]:
    return speech_items(shared, seed) + av_items(shared)
