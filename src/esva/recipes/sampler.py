"""Deterministic per-epoch batch order, so that ``--resume`` continues exactly.

The order of epoch e depends only on (seed, e): a resumed run draws the same batches as an
uninterrupted one. ``balanced=True`` draws every class equally often (with replacement).

``groups`` balances the draw over a hierarchy instead (with replacement), e.g. corpus then
speaker for training across corpora: each corpus gets the same share of the draws, inside a
corpus each speaker the same share, inside a speaker each clip the same. Without it, TESS's two
speakers (2800 clips) would outweigh EMOVO's six (588 clips) almost five to one, and a model
would learn TESS's two voices more than emotion. ``size`` sets the number of draws per epoch
(default: the number of clips), so that an epoch's cost does not grow with the largest corpus.

:class:`EpochBatches` is the same rule for datasets whose items are whole batches: its keys
(epoch, i) seed the batch, so resuming mid-epoch replays it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from esva.errors import EsvaError


def hierarchical_weights(groups: Sequence[Sequence[str]]) -> np.ndarray:
    """Draw probabilities giving each level's groups equal shares inside their parent.

    ``groups[i]`` is clip i's path from the top level down, e.g. ``("tess", "tess:OAF")``;
    every clip must give the same number of levels. The result sums to one.
    """
    paths = [tuple(g) for g in groups]
    if not paths:
        return np.zeros(0)
    depth = {len(p) for p in paths}
    if len(depth) != 1:
        raise EsvaError("every clip needs the same number of balance levels")
    p = np.ones(len(paths))
    for level in range(depth.pop() + 1):
        # each parent's children at this level: sub-groups, or clips below the last level
        children: dict[tuple, set] = defaultdict(set)
        for i, q in enumerate(paths):
            children[q[:level]].add(q[level] if level < len(q) else i)
        for i, q in enumerate(paths):
            p[i] /= len(children[q[:level]])
    return p / p.sum()


class EpochSampler(Sampler[int]):
    def __init__(
        self,
        labels: list[int],
        seed: int,
        balanced: bool = False,
        groups: Sequence[Sequence[str]] | None = None,
        size: int | None = None,
    ) -> None:
        self.labels = np.asarray(labels)
        self.seed = seed
        self.balanced = balanced
        self.epoch = 0
        if groups is not None and balanced:
            raise EsvaError("choose class-balanced or corpus/speaker-balanced sampling, not both")
        self.size = int(size) if size else len(self.labels)
        self.weights: np.ndarray | None = None
        if groups is not None:
            if len(groups) != len(self.labels):
                raise EsvaError("balance groups must name one path per clip")
            self.weights = hierarchical_weights(groups)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self.labels)
        if self.weights is not None:
            return iter(rng.choice(n, size=self.size, replace=True, p=self.weights).tolist())
        if not self.balanced:
            if self.size == n:
                return iter(rng.permutation(n).tolist())
            return iter(rng.choice(n, size=self.size, replace=self.size > n).tolist())
        classes, counts = np.unique(self.labels, return_counts=True)
        weight_of = dict(zip(classes.tolist(), (1.0 / counts).tolist(), strict=True))
        p = np.array([weight_of[c] for c in self.labels.tolist()])
        return iter(rng.choice(n, size=self.size, replace=True, p=p / p.sum()).tolist())


class EpochBatches(Sampler[tuple[int, int]]):
    """Keys (epoch, i) for i < ``steps``, for a dataset whose item is a whole batch drawn from
    (seed, epoch, i) alone: the engine's resume then replays the same batches."""

    def __init__(self, steps: int) -> None:
        self.steps, self.epoch = steps, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, i) for i in range(self.steps)])
