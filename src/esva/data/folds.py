"""Speaker-independent k-fold splits, written to disk so that every run uses the same folds.

Emotion recognisers learn voices and faces as readily as emotions, so a clip's speaker must
never be on both sides of a split. :func:`make_speaker_folds` deals whole speakers into ``k``
test folds, balanced by sex where the clips say it (``extra["sex"]``) and then by clip count,
and inside each fold's training speakers picks validation speakers (also whole, also balanced
by sex) for early stopping. Everything is drawn from one ``random.Random(seed)``: the same clips
and seed give the same folds on every machine.

RAVDESS actors 01-20 (ten male, ten female, 60 clips each) with ``k=5`` give four actors per test
fold, two of each sex; the default ``val_fraction=0.15`` then holds out two of the sixteen
training actors (one of each sex) for validation.

:meth:`Folds.save` writes a JSON file (format ``esva-folds/1``) listing each fold's test and
validation speakers and clip names, plus every speaker's clips. :meth:`Folds.load` reads it back
*against the dataset*: a file whose clips or speakers differ from the dataset's, or whose
clips' media files have gone, is refused with a one-line :class:`EsvaError`.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esva.data.sources import ClipSource
from esva.errors import EsvaError
from esva.io import read_json, write_json

FORMAT = "esva-folds/1"
UNKNOWN_SEX = "unknown"


@dataclass(frozen=True)
class Fold:
    """One fold: the speakers held out for testing and those used for validation."""

    test: tuple[str, ...]
    val: tuple[str, ...]


@dataclass
class Folds:
    """``k`` speaker-disjoint folds over a fixed list of clips."""

    folds: list[Fold]
    clips: list[ClipSource] = field(repr=False)  # the dataset, in its own order
    seed: int = 0
    val_fraction: float = 0.15
    _by_speaker: dict[str, list[ClipSource]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_speaker = _group_by_speaker(self.clips)

    @property
    def k(self) -> int:
        return len(self.folds)

    @property
    def speakers(self) -> list[str]:
        return sorted(self._by_speaker)

    def split(self, i: int) -> tuple[list[ClipSource], list[ClipSource], list[ClipSource]]:
        """``(train, val, test)`` clips of fold ``i``, each in dataset order."""
        if not 0 <= i < self.k:
            raise EsvaError(f"fold {i} does not exist (folds are 0..{self.k - 1})")
        test, val = set(self.folds[i].test), set(self.folds[i].val)
        parts: tuple[list[ClipSource], list[ClipSource], list[ClipSource]] = ([], [], [])
        for clip in self.clips:
            side = 2 if clip.speaker in test else 1 if clip.speaker in val else 0
            parts[side].append(clip)
        return parts

    # ------------------------------------------------------------------------------ to disk
    def to_dict(self) -> dict[str, Any]:
        by = self._by_speaker
        return {
            "format": FORMAT,
            "k": self.k,
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "n_clips": len(self.clips),
            "folds": [
                {
                    "fold": i,
                    "test_speakers": list(fold.test),
                    "val_speakers": list(fold.val),
                    "test_clips": [c.name for s in fold.test for c in by[s]],
                    "val_clips": [c.name for s in fold.val for c in by[s]],
                }
                for i, fold in enumerate(self.folds)
            ],
            "speakers": {
                s: {"sex": _sex(by[s]), "clips": [c.name for c in by[s]]} for s in sorted(by)
            },
        }

    def save(self, path: str | Path) -> None:
        """Write the folds as JSON, atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def load(
        cls, path: str | Path, clips: Sequence[ClipSource], *, check_media: bool = True
    ) -> Folds:
        """Read folds written by :meth:`save` and check them against ``clips``.

        Refused (one-line :class:`EsvaError` naming ``path``): a file that is not a folds file,
        one whose clip names or speakers differ from ``clips``, and, with ``check_media``, a
        dataset whose clips' media files no longer exist.
        """
        data = read_json(path)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise EsvaError(f"not an esva folds file (expected format {FORMAT!r})", path)
        try:
            folds = [
                Fold(tuple(map(str, f["test_speakers"])), tuple(map(str, f["val_speakers"])))
                for f in data["folds"]
            ]
            file_speakers = {
                str(s): [str(n) for n in entry["clips"]] for s, entry in data["speakers"].items()
            }
            declared = [(list(f["test_clips"]), list(f["val_clips"])) for f in data["folds"]]
            seed, val_fraction = int(data["seed"]), float(data["val_fraction"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EsvaError(f"malformed folds file ({type(exc).__name__}: {exc})", path) from None

        clips = list(clips)
        _check_matches(path, file_speakers, clips)
        _check_partition(path, folds, set(file_speakers))
        result = cls(folds, clips, seed=seed, val_fraction=val_fraction)
        written = result.to_dict()["folds"]
        for i, (test_clips, val_clips) in enumerate(declared):
            if test_clips != written[i]["test_clips"] or val_clips != written[i]["val_clips"]:
                raise EsvaError(f"fold {i}'s clip lists disagree with its speakers", path)
        if check_media:
            gone = [p for c in clips for p in c.media if not p.exists()]
            if gone:
                raise EsvaError(
                    f"{len(gone)} media files of the dataset no longer exist (first: {gone[0]})",
                    path,
                )
        return result


# ------------------------------------------------------------------------------ making folds
def make_speaker_folds(
    clips: Iterable[ClipSource], k: int = 5, seed: int = 0, val_fraction: float = 0.15
) -> Folds:
    """Deal whole speakers into ``k`` test folds and pick validation speakers in each.

    Speakers are dealt stratum by stratum (sex, from ``extra["sex"]``; ``unknown`` when absent),
    largest first, each to the fold with the fewest speakers of its sex and then the fewest
    clips; ties go by a seeded fold order. Per fold, ``round(val_fraction * training speakers)``
    (at least one while two or more remain) of the training speakers become validation speakers,
    alternating between sexes.
    """
    clips = list(clips)
    if k < 2:
        raise EsvaError(f"k-fold needs k >= 2, got {k}")
    if not 0.0 <= val_fraction < 1.0:
        raise EsvaError(f"val_fraction must be in [0, 1), got {val_fraction}")
    by_speaker = _group_by_speaker(clips)
    if len(by_speaker) < k:
        raise EsvaError(f"{k} folds need at least {k} speakers, the clips have {len(by_speaker)}")

    rng = random.Random(seed)
    strata: dict[str, list[str]] = {}
    for speaker in sorted(by_speaker):
        strata.setdefault(_sex(by_speaker[speaker]), []).append(speaker)
    fold_rank = list(range(k))
    rng.shuffle(fold_rank)  # tie-break order, so that fold 0 does not always get the extra

    test: list[list[str]] = [[] for _ in range(k)]
    n_clips = [0] * k
    n_sex: list[Counter[str]] = [Counter() for _ in range(k)]
    for sex in sorted(strata):
        speakers = strata[sex]
        rng.shuffle(speakers)
        speakers.sort(key=lambda s: -len(by_speaker[s]))  # stable: size order, ties shuffled
        for speaker in speakers:
            f = min(range(k), key=lambda i: (n_sex[i][sex], n_clips[i], fold_rank[i]))
            test[f].append(speaker)
            n_clips[f] += len(by_speaker[speaker])
            n_sex[f][sex] += 1

    folds = []
    for i in range(k):
        held_out = set(test[i])
        train = [s for s in sorted(by_speaker) if s not in held_out]
        folds.append(
            Fold(
                tuple(sorted(test[i])),
                tuple(sorted(_pick_val(train, by_speaker, val_fraction, rng))),
            )
        )
    return Folds(folds, clips, seed=seed, val_fraction=val_fraction)


def _pick_val(
    train: list[str], by_speaker: dict[str, list[ClipSource]], fraction: float, rng: random.Random
) -> list[str]:
    n = round(fraction * len(train))
    if fraction > 0 and len(train) >= 2:
        n = max(n, 1)
    n = min(n, len(train) - 1)  # always leave a speaker to train on
    pools: dict[str, list[str]] = {}
    for speaker in train:
        pools.setdefault(_sex(by_speaker[speaker]), []).append(speaker)
    order = sorted(pools)
    rng.shuffle(order)
    for sex in order:
        rng.shuffle(pools[sex])
    picked: list[str] = []
    while len(picked) < n:  # one of each sex in turn, so validation is balanced too
        for sex in order:
            if pools[sex] and len(picked) < n:
                picked.append(pools[sex].pop())
    return picked


# ------------------------------------------------------------------------------ helpers
def _group_by_speaker(clips: Sequence[ClipSource]) -> dict[str, list[ClipSource]]:
    by: dict[str, list[ClipSource]] = {}
    names: set[str] = set()
    for clip in clips:
        if clip.name in names:
            raise EsvaError(f"duplicate clip name {clip.name!r}: folds need unique names")
        names.add(clip.name)
        if not clip.speaker:
            where = clip.media[0] if clip.media else None
            raise EsvaError(f"clip {clip.name} has no speaker: speaker folds need one", where)
        by.setdefault(clip.speaker, []).append(clip)
    if not by:
        raise EsvaError("no clips to split into folds")
    return by


def _sex(clips: list[ClipSource]) -> str:
    sexes = {c.extra.get("sex") or UNKNOWN_SEX for c in clips}
    if len(sexes) > 1:
        raise EsvaError(f"speaker {clips[0].speaker} has clips marked {sorted(sexes)}")
    return sexes.pop()


def _check_matches(
    path: str | Path, file_speakers: dict[str, list[str]], clips: list[ClipSource]
) -> None:
    """The folds file must list exactly the dataset's clips, each under its own speaker."""
    file_of = {name: s for s, names in file_speakers.items() for name in names}
    data_of = {c.name: c.speaker for c in clips}
    extra = [n for n in file_of if n not in data_of]
    missing = [n for n in data_of if n not in file_of]
    moved = [n for n in data_of if n in file_of and file_of[n] != data_of[n]]
    if extra or missing or moved:
        problems = []
        for what, names in (
            ("clips in the file but not in the dataset", extra),
            ("dataset clips not in the file", missing),
            ("clips with another speaker", moved),
        ):
            if names:
                problems.append(f"{len(names)} {what} (e.g. {names[0]})")
        raise EsvaError(f"folds file does not match the dataset: {'; '.join(problems)}", path)


def _check_partition(path: str | Path, folds: list[Fold], speakers: set[str]) -> None:
    """Every speaker in exactly one test fold; validation speakers drawn from training ones."""
    if len(folds) < 2:
        raise EsvaError(f"folds file has {len(folds)} folds, expected at least 2", path)
    seen = Counter(s for fold in folds for s in fold.test)
    twice = sorted(s for s, n in seen.items() if n > 1)
    if twice or set(seen) != speakers:
        raise EsvaError(
            f"test folds must hold every speaker exactly once (repeated: {twice[:3]}, "
            f"missing: {sorted(speakers - set(seen))[:3]}, "
            f"unknown: {sorted(set(seen) - speakers)[:3]})",
            path,
        )
    for i, fold in enumerate(folds):
        if set(fold.val) & set(fold.test) or not set(fold.val) <= speakers:
            raise EsvaError(
                f"fold {i}: validation speakers overlap the test fold or are unknown", path
            )
