"""MSFE (Eq. 1) and the supervised contrastive loss (Eq. 2)."""

from __future__ import annotations

import math

import pytest
import torch

from esva.msfe import MSFE, MSFEConfig, mix_branches, supervised_contrastive_loss


def test_mix_branches_is_the_weighted_sum_of_eq1():
    outs = torch.randn(3, 2, 5, 4)
    w = torch.tensor([0.2, 0.5, 0.3])
    expected = 0.2 * outs[0] + 0.5 * outs[1] + 0.3 * outs[2]
    torch.testing.assert_close(mix_branches(outs, w), expected)


def test_default_branches_span_20ms_to_1s_at_50hz():
    rf = MSFEConfig(in_dim=8).receptive_fields()
    assert min(rf) * 20 == 20
    assert 900 <= max(rf) * 20 <= 1100
    assert rf == sorted(rf) and len(set(rf)) == len(rf)


def test_shapes_weights_and_masked_frames():
    torch.manual_seed(0)
    msfe = MSFE(MSFEConfig(in_dim=6, out_dim=10, dropout=0.0)).eval()
    w = msfe.branch_weights()
    assert w.shape == (5,) and math.isclose(float(w.detach().sum()), 1.0, rel_tol=1e-6)
    x = torch.randn(2, 40, 6)
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[1, 25:] = False
    y = msfe(x, mask)
    assert y.shape == (2, 40, 10)
    assert torch.all(y[1, 25:] == 0), "padded frames must stay zero"
    # What sits in the padding must not leak into the valid frames.
    x2 = x.clone()
    x2[1, 25:] = 1000.0
    torch.testing.assert_close(msfe(x2, mask)[1, :25], y[1, :25])


def test_branch_weights_train():
    torch.manual_seed(0)
    msfe = MSFE(MSFEConfig(in_dim=4, out_dim=4, dropout=0.0))
    msfe(torch.randn(2, 30, 4)).pow(2).mean().backward()
    assert msfe.branch_logits.grad is not None and msfe.branch_logits.grad.abs().sum() > 0


def test_config_rejects_even_kernels():
    with pytest.raises(ValueError):
        MSFEConfig(in_dim=4, kernel_sizes=(2,), dilations=(1,))


def _loop_reference(z: torch.Tensor, labels: torch.Tensor, t: float) -> torch.Tensor:
    """Eq. 2 written as plain loops, straight from the definition."""
    z = torch.nn.functional.normalize(z, dim=-1)
    total, anchors = 0.0, 0
    n = len(labels)
    for i in range(n):
        positives = [p for p in range(n) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        denom = sum(math.exp(float(z[i] @ z[a]) / t) for a in range(n) if a != i)
        total += -sum(math.log(math.exp(float(z[i] @ z[p]) / t) / denom) for p in positives) / len(
            positives
        )
        anchors += 1
    return torch.tensor(total / anchors)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contrastive_equals_loop_reference(seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(9, 5, generator=g)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 3, 2, 1])  # class 3 has a single sample: skipped
    got = supervised_contrastive_loss(z, labels, temperature=0.2)
    torch.testing.assert_close(got, _loop_reference(z, labels, 0.2), rtol=1e-5, atol=1e-5)


def test_contrastive_without_positives_is_zero_not_nan():
    z = torch.randn(4, 3, requires_grad=True)
    loss = supervised_contrastive_loss(z, torch.tensor([0, 1, 2, 3]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(z.grad).all()


def test_contrastive_prefers_clustered_embeddings():
    labels = torch.tensor([0, 0, 1, 1])
    clustered = torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1.0], [0.1, 0.9]])
    mixed = torch.tensor([[1.0, 0], [0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    assert supervised_contrastive_loss(clustered, labels) < supervised_contrastive_loss(
        mixed, labels
    )


def test_contrastive_valid_mask_excludes_samples():
    z = torch.randn(6, 4)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    valid = torch.tensor([True, True, True, True, False, False])
    torch.testing.assert_close(
        supervised_contrastive_loss(z, labels, valid=valid),
        supervised_contrastive_loss(z[:4], labels[:4]),
    )
