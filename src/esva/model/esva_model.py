"""The ESVA model: MSFE on audio, audio-video alignment, attention pooling and fusion.

Data flows one way (the paper's Figure 1)::

    audio (B,Ta,Da) --MSFE (Eq.1)----------------> h_a --pool--\
                  \\--resample (Eq.3)--sync head--> z_a          \
    visual(B,Tv,Dv) --projection-----------------> h_v --pool----> fusion -> emotion, valence
                  \\--resample (Eq.3)--sync head--> z_v          /
    z_a, z_v --τ* (Eq.6,9)--> shift h_v --> joint[h_a, h_v', h_a⊙h_v'] --pool--/
    text  (B,Tt,Dt) --projection-----------------> h_t --pool--/

Training loss (Eq. 7): L = L_align + λ·L_emo (+ μ·L_contrast on the pooled MSFE audio, Eq. 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from esva.align import (
    SyncHeads,
    alignment_curves,
    offsets_from_curves,
    resample_sequence,
    shift,
    soft_min_alignment,
)
from esva.errors import EsvaError
from esva.fusion import AttentionPool, FusionClassifier
from esva.io import atomic_dir
from esva.model.config import ESVAConfig
from esva.msfe import MSFE, MSFEConfig, supervised_contrastive_loss

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def total_loss(
    losses: dict[str, torch.Tensor], lambda_emo: float, mu_contrast: float
) -> torch.Tensor:
    """Eq. 7: L = L_align + λ·L_emo, plus μ·L_contrast (Eq. 2) when that term is on.

    ``losses`` holds ``"emo"`` and, when computed, ``"align"`` (Eq. 8) and ``"contrast"``.
    """
    total = lambda_emo * losses["emo"]
    if "align" in losses:
        total = total + losses["align"]
    if "contrast" in losses:
        total = total + mu_contrast * losses["contrast"]
    return total


class FrameProjection(nn.Module):
    """Per-frame projection (no temporal context): visual, text, and audio without MSFE."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(in_dim),
            nn.Linear(in_dim, out_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.LayerNorm(out_dim),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(x) * mask.unsqueeze(-1).to(x.dtype)


@dataclass
class ESVAOutput:
    logits: torch.Tensor  # (B, C)
    valence: torch.Tensor | None  # (B,)
    present: dict[str, torch.Tensor]  # stream -> (B,) bool: which inputs the prediction used
    tau_frames: torch.Tensor | None  # (B,) τ* at align_fps (paper convention), None w/o alignment
    offset_confidence: torch.Tensor | None  # (B,)
    losses: dict[str, torch.Tensor] = field(default_factory=dict)  # "total", "emo", "align", ...
    # Frame-level hidden sequences and masks per stream: audio after MSFE, visual/text after
    # their projections, joint after alignment (at align_fps). What the LLM projectors read.
    frames: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def probabilities(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=-1)


class ESVAModel(nn.Module):
    def __init__(self, config: ESVAConfig) -> None:
        super().__init__()
        self.config = c = config
        h = c.hidden_dim
        # Per-modality projections of the encoders' features into the hidden size (MSFE for audio).
        self.projections = nn.ModuleDict()
        if c.audio_dim is not None:
            self.projections["audio"] = (
                MSFE(
                    MSFEConfig(
                        c.audio_dim,
                        h,
                        tuple(c.msfe_kernel_sizes),
                        tuple(c.msfe_dilations),
                        c.dropout,
                    )
                )
                if c.use_msfe
                else FrameProjection(c.audio_dim, h, c.dropout)
            )
            self.contrast_head = nn.Sequential(
                nn.Linear(h, h), nn.GELU(), nn.Linear(h, c.contrastive_dim)
            )
        if c.visual_dim is not None:
            self.projections["visual"] = FrameProjection(c.visual_dim, h, c.dropout)
        if c.text_dim is not None:
            self.projections["text"] = FrameProjection(c.text_dim, h, c.dropout)
        streams = list(c.modalities)
        if c.aligns:
            streams.append("joint")
            self.joint = nn.Sequential(
                nn.Linear(3 * h, h), nn.GELU(), nn.Dropout(c.dropout), nn.LayerNorm(h)
            )
            self.sync = (
                SyncHeads(c.audio_dim, c.visual_dim, c.sync_dim) if c.use_alignment else None
            )
        self.pools = nn.ModuleDict({s: AttentionPool(h) for s in streams})
        self.fusion = FusionClassifier(streams, h, len(c.classes), c.use_valence, c.dropout)

    # --- inspection ---------------------------------------------------------------------------
    def msfe_branch_weights(self) -> dict[str, float] | None:
        """Eq. 1's w_i keyed by each branch's receptive field in ms (None without MSFE)."""
        enc = self.projections["audio"] if "audio" in self.projections else None  # noqa: SIM401
        if not isinstance(enc, MSFE):
            return None
        w = enc.branch_weights().detach().cpu().tolist()
        ms = [1000.0 * rf / self.config.audio_fps for rf in enc.config.receptive_fields()]
        return {f"{m:.0f}ms": float(x) for m, x in zip(ms, w, strict=True)}

    # --- forward ------------------------------------------------------------------------------
    def _present(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        first = next(v for v in batch.values() if torch.is_tensor(v))
        b = first.shape[0]
        present = {}
        for m in self.config.modalities:
            mask = batch.get(f"{m}_mask")
            present[m] = (
                mask.any(dim=1)
                if mask is not None
                else torch.zeros(b, dtype=torch.bool, device=first.device)
            )
        if self.training and self.config.modality_dropout > 0 and len(present) > 1:
            keep = {
                m: p & (torch.rand_like(p, dtype=torch.float32) >= self.config.modality_dropout)
                for m, p in present.items()
            }
            none_left = ~torch.stack(list(keep.values())).any(0)
            # Never hide every modality of a sample: fall back to what it had.
            present = {m: torch.where(none_left, present[m], keep[m]) for m in present}
        return present

    def forward(self, batch: dict[str, torch.Tensor]) -> ESVAOutput:
        c = self.config
        present = self._present(batch)
        masks = {
            m: batch[f"{m}_mask"] & present[m].unsqueeze(1)
            for m in c.modalities
            if present[m].any()
        }
        hidden, pooled, frames = {}, {}, {}
        for m in c.modalities:
            if m in masks:
                hidden[m] = self.projections[m](batch[m], masks[m])
                pooled[m], _ = self.pools[m](hidden[m], masks[m])
                frames[m] = (hidden[m], masks[m])
            else:
                pooled[m] = self.fusion.missing[m].new_zeros(len(present[m]), c.hidden_dim)
        losses: dict[str, torch.Tensor] = {}
        tau = conf = None
        if c.aligns:
            joint, tau, conf, l_align = self._joint(batch, masks, hidden, present)
            if joint is not None:
                frames["joint"] = joint
                pooled["joint"], _ = self.pools["joint"](*joint)
                present["joint"] = joint[1].any(dim=1)
            else:
                pooled["joint"] = self.fusion.missing["joint"].new_zeros(
                    len(present[c.modalities[0]]), c.hidden_dim
                )
                present["joint"] = torch.zeros_like(present[c.modalities[0]])
            if l_align is not None:
                losses["align"] = l_align
        out = self.fusion(pooled, present)
        if "label" in batch:
            losses.update(self._losses(batch, out, pooled, present))
            losses["total"] = total_loss(losses, c.lambda_emo, c.mu_contrast)
        return ESVAOutput(out.logits, out.valence, present, tau, conf, losses, frames)

    def _joint(self, batch, masks, hidden, present):
        """The audio x aligned-visual frame stream (Eq. 3 resampling, Eq. 6/9 offset, shift).

        Returns ((joint frames, mask) or None without both streams, τ*, confidence, L_align).
        """
        c = self.config
        if "audio" not in masks or "visual" not in masks:
            return None, None, None, None
        xa, ma, xv, mv = batch["audio"], masks["audio"], batch["visual"], masks["visual"]
        n = max(
            1, math.ceil(max(xa.shape[1] / c.audio_fps, xv.shape[1] / c.visual_fps) * c.align_fps)
        )
        ha, mha = resample_sequence(hidden["audio"], ma, c.audio_fps, c.align_fps, n)
        hv, mhv = resample_sequence(hidden["visual"], mv, c.visual_fps, c.align_fps, n)
        tau = conf = l_align = None
        if c.use_alignment:
            ra, mra = resample_sequence(xa, ma, c.audio_fps, c.align_fps, n)
            rv, mrv = resample_sequence(xv, mv, c.visual_fps, c.align_fps, n)
            za, zv = self.sync(ra, rv)
            geometry = dict(
                max_shift=max(1, round(c.max_offset_s * c.align_fps)),
                window=max(2, round(c.align_window_s * c.align_fps)),
                hop=max(1, round(c.align_hop_s * c.align_fps)),
                alpha=c.alpha,
                beta=c.beta,
            )
            # One pass gives the curves for both the hard τ* (used to shift) and the loss.
            curves = alignment_curves(za, zv, mra, mrv, **geometry)
            est = offsets_from_curves(curves, c.beta)
            tau, conf = est.tau, est.confidence
            hv, mhv = shift(hv, mhv, tau)
            l_align, _ = soft_min_alignment(curves.cost, curves.max_shift, c.align_temperature)
        mj = mha & mhv
        hj = self.joint(torch.cat([ha, hv, ha * hv], dim=-1)) * mj.unsqueeze(-1).to(ha.dtype)
        return (hj, mj), tau, conf, l_align

    def _losses(self, batch, out, pooled, present) -> dict[str, torch.Tensor]:
        c = self.config
        labels = batch["label"]
        labelled = labels >= 0
        losses = {}
        if labelled.any():
            emo = F.cross_entropy(out.logits[labelled], labels[labelled])
        else:
            emo = out.logits.sum() * 0.0
        if c.use_valence and out.valence is not None and "valence_mask" in batch:
            vm = batch["valence_mask"]
            if vm.any():
                losses["valence"] = F.mse_loss(out.valence[vm], batch["valence"][vm])
                emo = emo + c.valence_weight * losses["valence"]
        losses["emo"] = emo
        if c.use_contrastive and "audio" in pooled:
            z = self.contrast_head(pooled["audio"])
            losses["contrast"] = supervised_contrastive_loss(
                z, labels, c.contrastive_temperature, valid=labelled & present["audio"]
            )
        return losses

    # --- persistence (transformers-style directory: config.json + model.safetensors) ---------
    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_dir(directory) as tmp:
            self.config.save(tmp / CONFIG_NAME)
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "library": "esva"})
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, config: ESVAConfig | None = None) -> ESVAModel:
        """Load a saved model. With ``config``, refuse a checkpoint whose architecture differs."""
        directory = Path(directory)
        if not directory.is_dir():
            raise EsvaError("model directory not found", directory)
        saved = ESVAConfig.load(directory / CONFIG_NAME)
        if config is not None:
            diff = saved.architecture_diff(config)
            if diff:
                raise EsvaError(
                    f"checkpoint was saved with a different config ({'; '.join(diff)})", directory
                )
        model = cls(saved)
        state, weights = read_weights(directory)
        # Folders written before the projections were named so call them "encoders.".
        state = {
            ("projections." + k.removeprefix("encoders.") if k.startswith("encoders.") else k): v
            for k, v in state.items()
        }
        load_state(model, state, weights)
        return model


def read_weights(directory: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """A model folder's ``model.safetensors`` (and its path); a missing or corrupt file is a
    one-line :class:`EsvaError`."""
    weights = directory / WEIGHTS_NAME
    try:
        return load_file(str(weights)), weights
    except FileNotFoundError:
        raise EsvaError("no model.safetensors in the model directory", directory) from None
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise EsvaError(f"cannot read weights ({exc})", weights) from None


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """``load_state_dict`` that reports a mismatch in one line naming the file."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        if shapes:
            parts.append(f"shape mismatch {shapes[:3]}")
        raise EsvaError(f"weights do not fit the config ({'; '.join(parts)})", source)
    # A checkpoint with NaN/inf weights would predict NaN for every clip: refuse it here.
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise EsvaError(f"weights hold NaN or infinite values ({', '.join(broken[:3])})", source)
    model.load_state_dict(state)
