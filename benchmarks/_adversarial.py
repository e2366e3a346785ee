"""Corpus-adversarial training and mixup on pooled features (issue 17, item 3), on the engine.

The shipped voice head is linear (a convex fit, :mod:`esva.recipes.pooled_voice`), which can
neither take a gradient-reversal branch nor be trained on mixed pairs. So these two robust-training
ideas are measured on the smallest model that can: one hidden layer over the same standardised
pooled statistics, trained by the project's engine (AdamW, warm-up + cosine, seeded batches):

* corpus-adversarial (Ganin & Lempitsky, 2015, DANN): a corpus classifier reads the hidden layer
  through a gradient-reversal layer, so the hidden layer is pushed to carry no corpus identity.
  The reversal weight ramps up as ``lam * (2 / (1 + exp(-10 p)) - 1)`` over training progress
  ``p``, as in the paper;
* mixup (Zhang et al., 2018): each batch is mixed with a shuffled copy of itself by
  ``l ~ Beta(alpha, alpha)``, inputs and the two cross-entropies alike.

Both are "one change" rows of ``benchmarks/generalise.py``: an MLP without either, then each.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from esva.recipes.engine import Engine, LoopConfig, Step
from esva.recipes.sampler import EpochBatches


@dataclass(frozen=True)
class RobustConfig:
    adversarial: float = 0.0  # lam, the gradient-reversal weight (0: no corpus branch)
    mixup: float = 0.0  # alpha of Beta(alpha, alpha) (0: no mixup)
    hidden: int = 256
    epochs: int = 15
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-2
    seed: int = 0


class GradientReversal(torch.autograd.Function):
    """Identity forward; the gradient multiplied by ``-weight`` backward (DANN)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.weight * grad, None


class RobustMLP(torch.nn.Module):
    def __init__(self, n_in: int, n_classes: int, n_corpora: int, hidden: int) -> None:
        super().__init__()
        self.encoder = torch.nn.Sequential(
            torch.nn.Dropout(0.2),
            torch.nn.Linear(n_in, hidden),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.3),
        )
        self.emotion = torch.nn.Linear(hidden, n_classes)
        self.corpus = torch.nn.Sequential(
            torch.nn.Linear(hidden, 64), torch.nn.ReLU(), torch.nn.Linear(64, n_corpora)
        )


def reversal_weight(lam: float, progress: float) -> float:
    """DANN's schedule: 0 at the start, ``lam`` at the end."""
    return lam * (2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0)


class _Batches(Dataset):
    """Item (epoch, i): rows of batch i of the epoch's seeded permutation, a mixup partner and
    weight drawn from (seed, epoch, i), and the training progress at that batch."""

    def __init__(self, x, y, d, config: RobustConfig) -> None:
        self.x, self.y, self.d, self.config = x, y, d, config
        self.steps = len(x) // config.batch_size

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, key: tuple[int, int]):
        epoch, i = key
        c = self.config
        order = np.random.default_rng([c.seed, epoch]).permutation(len(self.x))
        rows = torch.from_numpy(order[i * c.batch_size : (i + 1) * c.batch_size])
        rng = np.random.default_rng([c.seed, epoch, i])
        partner = torch.from_numpy(rng.permutation(len(rows)))
        mix = float(rng.beta(c.mixup, c.mixup)) if c.mixup > 0 else 1.0
        progress = (epoch * self.steps + i) / (c.epochs * self.steps)
        return self.x[rows], self.y[rows], self.d[rows], partner, mix, progress


def fit_robust(
    x: np.ndarray, y: np.ndarray, corpus: np.ndarray, n_classes: int, config: RobustConfig
):
    """Train :class:`RobustMLP` on standardised ``x``; returns ``predict(x) -> probabilities``."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy(((x - mean) / std).astype(np.float32))
    names = sorted(set(corpus.tolist()))
    d = torch.tensor([names.index(k) for k in corpus])

    def loss_fn(m: RobustMLP, batch) -> Step:
        xb, yb, db, partner, mix, progress = batch
        h = m.encoder(mix * xb + (1 - mix) * xb[partner])
        logits = m.emotion(h)
        loss = mix * F.cross_entropy(logits, yb) + (1 - mix) * F.cross_entropy(logits, yb[partner])
        logs = {"emotion": float(loss.detach())}
        if config.adversarial > 0:
            h_clean = m.encoder(xb) if config.mixup > 0 else h
            reversed_h = GradientReversal.apply(
                h_clean, reversal_weight(config.adversarial, progress)
            )
            corpus_loss = F.cross_entropy(m.corpus(reversed_h), db)
            loss = loss + corpus_loss
            logs["corpus"] = float(corpus_loss.detach())
        return Step(loss, logs)

    with tempfile.TemporaryDirectory() as tmp:
        loop = LoopConfig(
            epochs=config.epochs, lr=config.lr, out_dir=str(Path(tmp) / "run"),
            weight_decay=config.weight_decay, warmup_share=0.1, seed=config.seed,
            progress=False, cpu=True,
        )  # fmt: skip
        # Built first: it seeds torch, so the model's initial weights repeat too.
        engine = Engine(loop, {"robust": config.__dict__}, lambda run: run)
        model = RobustMLP(xt.shape[1], n_classes, len(names), config.hidden)
        data = _Batches(xt, torch.from_numpy(y), d, config)
        sampler = EpochBatches(len(data))
        loader = DataLoader(
            data, batch_size=1, sampler=sampler, collate_fn=lambda items: items[0],
            generator=torch.Generator(),
        )  # fmt: skip
        engine.fit(
            model, loader, sampler, loss_fn,
            validate=lambda m, acc: ({}, None),  # no held-out data: the last epoch is kept
            save_best=lambda m, directory: None, loss_key="train_emotion",
        )  # fmt: skip
    model.eval()

    def predict(x_new: np.ndarray) -> np.ndarray:
        z = torch.from_numpy(((x_new - mean) / std).astype(np.float32))
        with torch.no_grad():
            return torch.softmax(model.emotion(model.encoder(z)), dim=1).numpy()

    return predict
