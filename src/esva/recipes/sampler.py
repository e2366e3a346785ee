"""Deterministic per-epoch batch order, so that ``--resume`` continues exactly.

The order of epoch e depends only on (seed, e): a resumed run draws the same batches as an
uninterrupted one. ``balanced=True`` draws every class equally often (with replacement).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    def __init__(self, labels: list[int], seed: int, balanced: bool = False) -> None:
        self.labels = np.asarray(labels)
        self.seed = seed
        self.balanced = balanced
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self.labels)
        if not self.balanced:
            return iter(rng.permutation(n).tolist())
        classes, counts = np.unique(self.labels, return_counts=True)
        weight_of = dict(zip(classes.tolist(), (1.0 / counts).tolist(), strict=True))
        p = np.array([weight_of[c] for c in self.labels.tolist()])
        return iter(rng.choice(n, size=n, replace=True, p=p / p.sum()).tolist())
