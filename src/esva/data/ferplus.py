"""FER+ (Barsoum et al., ICMI 2016): the FER2013 faces with the votes of 10 annotators each.

A FER+ folder holds one sub-folder per split (``FER2013Train``, ``FER2013Valid``,
``FER2013Test``), each with 48x48 grey PNGs and a ``label.csv`` without a header whose rows are
``name, "(x, y, w, h)" face box, 10 vote counts`` over :data:`LABELS` (neutral, happiness,
surprise, sadness, anger, disgust, fear, contempt, unknown, not-a-face).

Protocol (esva's face expert): an image is kept when its majority vote is one of the 8 emotions
(:data:`EMOTIONS`; ties go to the first class in that order); the training target is the vote
distribution over the 8 emotions (soft labels), accuracy is scored against the majority label.

Decoding the ~36 k PNGs takes minutes, so :func:`load_split` caches each split as uint8 arrays
(``<split>_images.npy``, ``_votes.npy``, ``_names.npy``) in a folder of the caller's choosing;
a cache whose names or votes disagree with the split's ``label.csv`` is decoded again.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from esva.errors import EsvaError
from esva.io import atomic_path
from esva.labelsets import FERPLUS_CLASSES

LABELS: tuple[str, ...] = (*FERPLUS_CLASSES, "unknown", "not-a-face")
EMOTIONS: tuple[str, ...] = LABELS[:8]
SPLITS: dict[str, str] = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}
SIZE = 48


@dataclass
class FerPlusSplit:
    """The kept images of one split: uint8 ``(N, 48, 48)``, soft targets ``(N, 8)`` (vote
    shares, float32), majority labels ``(N,)`` (index into :data:`EMOTIONS`) and file names."""

    images: np.ndarray
    targets: np.ndarray
    labels: np.ndarray
    names: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def split_folder(root: str | Path, split: str) -> Path:
    if split not in SPLITS:
        raise EsvaError(f"unknown FER+ split {split!r} (known: {', '.join(SPLITS)})")
    return Path(root) / SPLITS[split]


def read_votes(folder: str | Path) -> tuple[list[str], np.ndarray]:
    """``(names, votes int (N, 10))`` of a split folder's ``label.csv``, refusing bad rows."""
    path = Path(folder) / "label.csv"
    if not path.is_file():
        raise EsvaError("no FER+ label.csv here (is this a FER+ split folder?)", path)
    names, votes = [], []
    with open(path, newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.reader(handle), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2 + len(LABELS):
                raise EsvaError(
                    f"label.csv line {line}: expected name, face box and {len(LABELS)} vote "
                    f"counts, got {len(row)} fields",
                    path,
                )
            try:
                counts = [int(v) for v in row[2 : 2 + len(LABELS)]]
            except ValueError:
                raise EsvaError(
                    f"label.csv line {line}: vote counts must be integers", path
                ) from None
            if min(counts) < 0:
                raise EsvaError(f"label.csv line {line}: negative vote count", path)
            names.append(row[0])
            votes.append(counts)
    if not names:
        raise EsvaError("label.csv lists no images", path)
    return names, np.asarray(votes, dtype=np.int64).reshape(-1, len(LABELS))


def _decode(folder: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    images = np.zeros((len(names), SIZE, SIZE), np.uint8)
    keep = np.ones(len(names), bool)
    for i, name in enumerate(names):
        img = cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE)
        if img is None:  # missing or unreadable: dropped, as the shipped expert's training did
            keep[i] = False
            continue
        images[i] = img if img.shape == (SIZE, SIZE) else cv2.resize(img, (SIZE, SIZE))
    return images, keep


def _cache_agrees(names: list[str], votes: np.ndarray, c_names, c_votes) -> bool:
    """The cached names must be the csv's (in order, unreadable ones dropped), votes equal."""
    index = {n: i for i, n in enumerate(names)}
    rows = [index.get(str(n), -1) for n in c_names]
    if any(r < 0 for r in rows) or rows != sorted(rows) or len(set(rows)) != len(rows):
        return False
    return c_votes.shape == (len(rows), len(LABELS)) and bool((votes[rows] == c_votes).all())


def load_split(
    root: str | Path, split: str, cache: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images uint8 (N, 48, 48), votes int (N, 10), names)`` of a split, every image whose
    PNG decodes; cached in ``cache`` (a folder) when given."""
    folder = split_folder(root, split)
    names, votes = read_votes(folder)
    files = None
    if cache is not None:
        cache = Path(cache)
        files = [cache / f"{split}_{k}.npy" for k in ("images", "votes", "names")]
        if all(f.is_file() for f in files):
            try:
                c_img, c_votes, c_names = (np.load(f) for f in files)
            except (OSError, ValueError):
                c_img = None
            if (
                c_img is not None
                and c_img.shape == (len(c_names), SIZE, SIZE)
                and _cache_agrees(names, votes, c_names, c_votes)
            ):
                return c_img, c_votes, c_names
    images, keep = _decode(folder, names)
    if not keep.any():
        raise EsvaError("no image of label.csv could be read", folder)
    out = images[keep], votes[keep], np.asarray(names)[keep]
    if files is not None:
        files[0].parent.mkdir(parents=True, exist_ok=True)
        for path, arr in zip(files, out, strict=True):
            with atomic_path(path) as tmp, open(tmp, "wb") as handle:
                np.save(handle, arr)
    return out


def majority(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(keep mask, majority label over the 8 emotions)``: drops unknown/not-a-face majorities
    (and images with no emotion vote at all)."""
    n = len(EMOTIONS)
    top = votes.argmax(axis=1)
    keep = (top < n) & (votes[:, :n].sum(axis=1) > 0)
    return keep, votes[:, :n].argmax(axis=1)


def soft_targets(votes: np.ndarray) -> np.ndarray:
    """Vote shares over the 8 emotions (rows with no emotion vote give NaN: drop them first)."""
    v8 = votes[:, : len(EMOTIONS)].astype(np.float32)
    return v8 / v8.sum(axis=1, keepdims=True)


def load_kept(root: str | Path, split: str, cache: str | Path | None = None) -> FerPlusSplit:
    """The images of a split whose majority is an emotion, their soft targets and labels."""
    images, votes, names = load_split(root, split, cache)
    keep, label = majority(votes)
    if not keep.any():
        raise EsvaError(f"no image of FER+ split {split!r} has an emotion majority", root)
    return FerPlusSplit(images[keep], soft_targets(votes[keep]), label[keep], names[keep])
