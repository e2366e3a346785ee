"""Feature projectors: each modality stream becomes a few tokens in the language model's space.

Emotion-LLaMA projects every encoder's utterance-level vector (MAE, VideoMAE, HuBERT) with one
linear layer into LLaMA's hidden size: one token per encoder. ESVA has frame-level streams
(audio after MSFE, visual, text, and the aligned audio-visual ``joint`` stream; see
:attr:`esva.model.ESVAOutput.frames`), so a stream can also keep some of its time course: its
valid frames are cut into ``k`` equal segments and each segment's masked mean becomes one token.
``k = 1`` is the utterance-level token (the masked mean over the whole clip).

Pooling comes before the linear layer: the mean of an affine map is the affine map of the mean,
so the result is the same as projecting every frame first, for a fraction of the work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from esva.errors import EsvaError

Stream = tuple[torch.Tensor, torch.Tensor]  # (features (B,T,D), mask (B,T) bool)


@dataclass
class ProjectorConfig:
    """Which streams are projected, from what width, into how many tokens each."""

    dims: dict[str, int]  # stream name -> feature width, e.g. {"audio": 128, "joint": 128}
    lm_dim: int  # the language model's hidden size
    # Tokens per stream: 1 = utterance-level (masked mean over the clip), k > 1 = k segments.
    # An int applies to every stream; a dict may leave streams out (they get 1).
    tokens: int | dict[str, int] = 1
    tokens_per_stream: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        if not self.dims:
            raise EsvaError("projector config: at least one feature stream is needed")
        bad = {m: d for m, d in self.dims.items() if not isinstance(d, int) or d <= 0}
        if bad:
            raise EsvaError(f"projector config: feature widths must be positive integers: {bad}")
        if isinstance(self.tokens, int):
            per = dict.fromkeys(self.dims, self.tokens)
        else:
            unknown = sorted(set(self.tokens) - set(self.dims))
            if unknown:
                raise EsvaError(f"projector config: tokens given for unknown streams {unknown}")
            per = {m: int(self.tokens.get(m, 1)) for m in self.dims}
        if any(k < 1 for k in per.values()):
            raise EsvaError(f"projector config: tokens per stream must be >= 1, got {per}")
        self.tokens_per_stream = per


def segment_pool(x: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked means of ``k`` equal segments of each sample's valid span.

    The span runs from the first to the last valid frame of each sample (so padding at either
    end, e.g. a stream that starts late on the container clock, does not squeeze the segments),
    and invalid frames inside it are left out of the means. A segment without a valid frame
    (a clip shorter than ``k`` frames, or a hole) is returned as zeros with mask False.

    x: (B, T, D), mask: (B, T) -> tokens (B, k, D), token mask (B, k).
    """
    m = mask.bool()
    t = torch.arange(x.shape[1], device=x.device)
    first = m.float().argmax(dim=1)  # 0 for an all-invalid sample: it pools nothing anyway
    last = x.shape[1] - 1 - m.flip(1).float().argmax(dim=1)
    span = (last - first + 1).clamp(min=1)
    segment = ((t[None, :] - first[:, None]) * k).div(span[:, None], rounding_mode="floor")
    weights = F.one_hot(segment.clamp(0, k - 1), k).to(x.dtype) * m.unsqueeze(-1).to(x.dtype)
    count = weights.sum(dim=1)  # (B, k)
    pooled = torch.einsum("btk,btd->bkd", weights, x) / count.clamp(min=1).unsqueeze(-1)
    return pooled, count > 0


class FeatureProjector(nn.Module):
    """One linear layer per stream into the LM hidden size, after segment pooling."""

    def __init__(self, config: ProjectorConfig) -> None:
        super().__init__()
        self.config = config
        self.proj = nn.ModuleDict({m: nn.Linear(d, config.lm_dim) for m, d in config.dims.items()})

    def forward(self, features: Mapping[str, Stream]) -> dict[str, Stream]:
        """``{stream: (x (B,T,D), mask (B,T))}`` -> ``{stream: (tokens (B,k,H), mask (B,k))}``.

        Streams may be left out (a batch without text); a stream the projector was not built
        for, or one of the wrong width, is a user error (features from another encoder).
        """
        out: dict[str, Stream] = {}
        for name, (x, mask) in features.items():
            if name not in self.proj:
                raise EsvaError(
                    f"no projector for feature stream {name!r} (this model has {sorted(self.proj)})"
                )
            if x.ndim != 3 or x.shape[-1] != self.config.dims[name]:
                raise EsvaError(
                    f"{name} features have shape {tuple(x.shape)}, the projector expects "
                    f"(batch, frames, {self.config.dims[name]})"
                )
            pooled, token_mask = segment_pool(x.float(), mask, self.config.tokens_per_stream[name])
            layer = self.proj[name]
            tokens = layer(pooled.to(layer.weight.dtype))
            out[name] = (tokens * token_mask.unsqueeze(-1).to(tokens.dtype), token_mask)
        return out
