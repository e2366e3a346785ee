"""Supervised contrastive loss over emotion labels, the paper's Eq. 2.

For every anchor i in the batch, all other samples with the same emotion are positives P(i) and
samples of other emotions are negatives. With cosine similarity s_ij = z_i·z_j / (|z_i||z_j|) and
temperature t:

    L = 1/|A| Σ_{i∈A} −1/|P(i)| Σ_{p∈P(i)} log( exp(s_ip / t) / Σ_{a≠i} exp(s_ia / t) )    (Eq. 2)

A is the set of anchors that have at least one positive; anchors without one are skipped (and a
batch with no positive pair at all gives a zero loss that still back-propagates), never NaN.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def supervised_contrastive_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 0.1,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 2 on (B, D) embeddings with (B,) integer labels; ``valid`` (B,) excludes samples."""
    if valid is not None:
        embeddings, labels = embeddings[valid], labels[valid]
    n = embeddings.shape[0]
    if n < 2:
        return embeddings.sum() * 0.0
    z = F.normalize(embeddings, dim=-1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    # log-softmax over all a != i: the anchor itself is excluded from the denominator.
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~self_mask
    n_pos = positives.sum(dim=1)
    anchors = n_pos > 0
    if not anchors.any():
        return embeddings.sum() * 0.0
    # where() instead of multiplication: -inf * 0 on the diagonal would be NaN.
    pos_log_prob = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    return -(pos_log_prob[anchors] / n_pos[anchors]).mean()
