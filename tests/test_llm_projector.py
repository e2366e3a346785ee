"""``esva.llm.projector``: utterance and segment tokens, masks, one linear layer per stream."""

from __future__ import annotations

import pytest
import torch

from esva.errors import EsvaError
from esva.llm.projector import FeatureProjector, ProjectorConfig, segment_pool


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.float().unsqueeze(-1)
    return (x * m).sum(0) / m.sum(0)


def test_utterance_token_is_the_projected_masked_mean() -> None:
    torch.manual_seed(0)
    proj = FeatureProjector(ProjectorConfig({"audio": 6}, lm_dim=10, tokens=1))
    x = torch.randn(3, 7, 6)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [0] * 7], dtype=torch.bool)
    tokens, tmask = proj({"audio": (x, mask)})["audio"]
    assert tokens.shape == (3, 1, 10) and tmask.tolist() == [[True], [True], [False]]
    layer = proj.proj["audio"]
    for i in range(2):
        expected = layer(_masked_mean(x[i], mask[i]))
        torch.testing.assert_close(tokens[i, 0], expected)
    assert not tokens[2].any()  # a sample without the stream gives a zero, masked token


def test_segments_follow_the_valid_span() -> None:
    x = torch.arange(20, dtype=torch.float32).reshape(1, 20, 1).repeat(1, 1, 2)
    mask = torch.zeros(1, 20, dtype=torch.bool)
    mask[0, 4:16] = True  # 12 valid frames with padding on both sides
    mask[0, 9] = False  # and a hole, left out of its segment's mean
    pooled, pmask = segment_pool(x, mask, 3)
    assert pooled.shape == (1, 3, 2) and pmask.all()
    # Segments of the span 4..15: 4-7, 8-11 (without 9), 12-15.
    expected = [sum(r) / len(r) for r in ([4, 5, 6, 7], [8, 10, 11], [12, 13, 14, 15])]
    torch.testing.assert_close(pooled[0, :, 0], torch.tensor(expected))


def test_short_clip_gives_fewer_valid_tokens() -> None:
    proj = FeatureProjector(ProjectorConfig({"joint": 4}, lm_dim=8, tokens=5))
    x = torch.randn(2, 9, 4)
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[0, :] = True
    mask[1, :3] = True  # 3 frames for 5 segments
    tokens, tmask = proj({"joint": (x, mask)})["joint"]
    assert tokens.shape == (2, 5, 8)
    assert tmask.sum(1).tolist() == [5, 3]
    assert not tokens[1][~tmask[1]].any()


def test_tokens_per_stream_and_gradients() -> None:
    config = ProjectorConfig({"audio": 5, "visual": 3}, lm_dim=4, tokens={"audio": 4})
    assert config.tokens_per_stream == {"audio": 4, "visual": 1}
    proj = FeatureProjector(config)
    feats = {
        "audio": (torch.randn(2, 12, 5), torch.ones(2, 12, dtype=torch.bool)),
        "visual": (torch.randn(2, 6, 3), torch.ones(2, 6, dtype=torch.bool)),
    }
    out = proj(feats)
    assert out["audio"][0].shape == (2, 4, 4) and out["visual"][0].shape == (2, 1, 4)
    sum(t.sum() for t, _ in out.values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in proj.parameters())


def test_user_errors() -> None:
    proj = FeatureProjector(ProjectorConfig({"audio": 5}, lm_dim=4))
    with pytest.raises(EsvaError, match="expects"):
        proj({"audio": (torch.randn(1, 3, 6), torch.ones(1, 3, dtype=torch.bool))})
    with pytest.raises(EsvaError, match="no projector"):
        proj({"text": (torch.randn(1, 3, 5), torch.ones(1, 3, dtype=torch.bool))})
    with pytest.raises(EsvaError, match="unknown streams"):
        ProjectorConfig({"audio": 5}, lm_dim=4, tokens={"visual": 2})
    with pytest.raises(EsvaError, match=">= 1"):
        ProjectorConfig({"audio": 5}, lm_dim=4, tokens=0)
