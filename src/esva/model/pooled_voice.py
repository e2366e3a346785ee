"""The pooled voice model: every encoder hidden state, mean and std over time, one linear layer.

Why this and not ESVA's MSFE head for the shipped voice: across corpora and languages the
statistics of ALL of a frozen speech encoder's hidden states, standardised, feed a linear
classifier that transfers better than a sequence model trained on one chosen layer
(``benchmarks/generalise.py`` -> ``results/generalise.md``, leave-one-corpus-out over five
corpora). The model reads the same padded batches as :class:`esva.model.ESVAModel`
(``collate``'s ``audio`` / ``audio_mask``), so the recogniser runs it, whole clip and timeline
windows alike, with no code of its own.

Its input is a Whisper stream extracted with ``layer="stack"`` (every hidden state side by
side, ``(T, n_states * D)``; several encoders' streams are concatenated, ``"a+b"``). Per clip:

    s = [mean_t x_t, std_t x_t] per hidden state        (statistics pooling)
    z = (s - mu) / sigma                                 (training-set standardisation)
    p = softmax((W z + b) / T)                           (T: the calibration temperature)

``fit_pooled_head`` (in :mod:`esva.recipes.pooled_voice`) fits W, b by L2-regularised
multinomial logistic regression; T is fitted on out-of-corpus predictions.

**Batch adaptation** (optional second head, ``config.adaptation``). Most of what separates
one corpus from another in these statistics is the recording set-up, language and speakers,
not the emotion; a single clip cannot tell them apart, but a batch of clips from one source
can. The adapted head was trained on statistics centred per source (each training corpus by
its own mean) and reads a batch centred by the batch's own mean:

    z_i = (s_i - mean_j s_j) / sigma_w                   (batch centring, sigma_w: the
    p_i = softmax((W_a z_i + b_a) / T_a)                  within-corpus std of training)

It is transductive (a clip's answer depends on the others in the batch) and assumes the batch
comes from one source and spans the emotions: ``esva predict --adapt`` on many files uses it for
a batch of at least ``adaptation["min_clips"]`` voice clips, and says so in every row.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from esva.errors import EsvaError
from esva.io import atomic_dir, read_json

MODEL_TYPE = "pooled-voice"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class PooledVoiceConfig:
    """What the model reads and answers; ``streams`` lists (encoder, n_states, dim) in order."""

    classes: list[str]
    streams: list[tuple[str, int, int]]
    audio_fps: float = 50.0
    temperature: float = 1.0
    # per clip, each hidden state's [mean | std] vector standardised over its own dimensions
    # (removes a clip's overall level and spread: all one user file can normalise by)
    clip_norm: bool = False
    # the batch-adapted head (module doc): {"min_clips", "temperature", "threshold"}, or None
    adaptation: dict[str, Any] | None = None
    training: dict[str, Any] = field(default_factory=dict)  # provenance, as written
    model_type: str = MODEL_TYPE

    @property
    def modalities(self) -> list[str]:
        return ["audio"]

    @property
    def encoders(self) -> dict[str, str]:
        return {"audio": "+".join(name for name, _, _ in self.streams)}

    @property
    def audio_dim(self) -> int:
        return sum(n * d for _, n, d in self.streams)

    @property
    def n_features(self) -> int:
        return 2 * self.audio_dim

    # ESVAConfig's fields the recogniser reads for any model
    visual_fps: float = 25.0
    align_fps: float = 50.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["streams"] = [list(s) for s in self.streams]
        return d

    @classmethod
    def from_dict(cls, obj: Any, where: Path | None = None) -> PooledVoiceConfig:
        if not isinstance(obj, dict) or obj.get("model_type") != MODEL_TYPE:
            raise EsvaError(f"not a {MODEL_TYPE} config", where)
        try:
            streams = [(str(n), int(k), int(d)) for n, k, d in obj["streams"]]
            classes = [str(c) for c in obj["classes"]]
            t = float(obj.get("temperature", 1.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise EsvaError(f"bad {MODEL_TYPE} config ({exc})", where) from None
        if not streams or len(classes) < 2 or not t > 0:
            raise EsvaError(f"bad {MODEL_TYPE} config (streams, classes or temperature)", where)
        adaptation = obj.get("adaptation")
        if adaptation is not None:
            try:
                adaptation = {
                    "min_clips": int(adaptation["min_clips"]),
                    "temperature": float(adaptation["temperature"]),
                    "threshold": float(adaptation["threshold"]),
                }
            except (KeyError, TypeError, ValueError) as exc:
                raise EsvaError(f"bad {MODEL_TYPE} config: adaptation ({exc})", where) from None
            if adaptation["min_clips"] < 2 or not adaptation["temperature"] > 0:
                raise EsvaError(f"bad {MODEL_TYPE} config: adaptation out of range", where)
        return cls(
            classes=classes,
            streams=streams,
            audio_fps=float(obj.get("audio_fps", 50.0)),
            temperature=t,
            clip_norm=bool(obj.get("clip_norm", False)),
            adaptation=adaptation,
            training=dict(obj.get("training", {})),
        )


@dataclass
class PooledOutput:
    """What the recogniser reads from any model (ESVAOutput's fields; no offset, no valence)."""

    logits: torch.Tensor  # (B, C), already divided by the temperature
    present: dict[str, torch.Tensor] = field(default_factory=dict)  # {"audio": (B,) bool}
    tau_frames: None = None
    offset_confidence: None = None
    valence: None = None
    # (B, F) the pooled statistics before standardisation (what batch adaptation reads)
    statistics: torch.Tensor | None = None

    @property
    def probabilities(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=-1)


def pooled_statistics(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, F) frames, (B, T) validity -> (B, 2F): mean and population std over valid frames.

    The order matches the features the head was trained on (per stream and hidden state: the
    means, then the stds) once :func:`interleave` has put them per hidden state.
    """
    m = mask.to(x.dtype).unsqueeze(-1)
    n = m.sum(1).clamp_min(1.0)
    mean = (x * m).sum(1) / n
    var = (((x - mean.unsqueeze(1)) ** 2) * m).sum(1) / n
    return torch.cat([mean, var.clamp_min(0.0).sqrt()], dim=-1)


def clip_normalise(stats: torch.Tensor, streams: list[tuple[str, int, int]]) -> torch.Tensor:
    """Each hidden state's ``[mean | std]`` block of interleaved statistics standardised over
    its own ``2D`` values (``PooledVoiceConfig.clip_norm``)."""
    parts, start = [], 0
    for _, n, d in streams:
        block = stats[:, start : start + n * 2 * d].reshape(-1, n, 2 * d)
        mean, std = block.mean(-1, keepdim=True), block.std(-1, keepdim=True, correction=0)
        block = (block - mean) / (std + 1e-6)
        parts.append(block.reshape(len(stats), -1))
        start += n * 2 * d
    return torch.cat(parts, dim=-1)


def interleave(stats: torch.Tensor, streams: list[tuple[str, int, int]]) -> torch.Tensor:
    """(B, 2F) [all means | all stds] -> (B, 2F) ordered stream, hidden state, [mean | std]:
    the layout of a clip's ``(n_states, 2D)`` pooled features flattened, stream after stream."""
    total = sum(n * d for _, n, d in streams)
    mean, std = stats[:, :total], stats[:, total:]
    parts, start = [], 0
    for _, n, d in streams:
        a = mean[:, start : start + n * d].reshape(-1, n, d)
        b = std[:, start : start + n * d].reshape(-1, n, d)
        parts.append(torch.cat([a, b], dim=-1).reshape(len(stats), -1))
        start += n * d
    return torch.cat(parts, dim=-1)


def batch_centre(statistics: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``(s_i - mean_j s_j) / sigma_w`` over the batch's rows (module doc, batch adaptation)."""
    return (statistics - statistics.mean(0, keepdim=True)) / scale


class PooledVoiceModel(nn.Module):
    """Standardised statistics of every hidden state -> linear -> tempered softmax."""

    def __init__(self, config: PooledVoiceConfig) -> None:
        super().__init__()
        self.config = config
        f = config.n_features
        self.register_buffer("mean", torch.zeros(f))
        self.register_buffer("scale", torch.ones(f))
        self.linear = nn.Linear(f, len(config.classes))
        if config.adaptation is not None:
            self.register_buffer("adapt_scale", torch.ones(f))
            self.adapt_linear = nn.Linear(f, len(config.classes))

    def statistics(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The pooled statistics ``s`` of a padded batch, before standardisation."""
        stats = interleave(pooled_statistics(x.float(), mask.bool()), self.config.streams)
        if self.config.clip_norm:
            stats = clip_normalise(stats, self.config.streams)
        return stats

    def features(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The standardised pooled statistics ``z`` of a padded batch (module doc)."""
        return (self.statistics(x, mask) - self.mean) / self.scale

    @property
    def adaptable(self) -> bool:
        return self.config.adaptation is not None

    def adapted_probabilities(self, statistics: torch.Tensor) -> torch.Tensor:
        """(N, C) probabilities of N clips of one batch by the batch-adapted head (module doc):
        the statistics centred by the batch's own mean."""
        if self.config.adaptation is None:
            raise EsvaError("this voice model has no batch-adapted head")
        z = batch_centre(statistics.float(), self.adapt_scale)
        logits = self.adapt_linear(z) / self.config.adaptation["temperature"]
        return torch.softmax(logits, dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> PooledOutput:
        x = batch.get("audio")
        if x is None:
            raise EsvaError("the pooled voice model needs an audio stream")
        mask = batch.get("audio_mask")
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool)
        stats = self.statistics(x, mask)
        logits = self.linear((stats - self.mean) / self.scale) / self.config.temperature
        return PooledOutput(logits, {"audio": mask.bool().any(1)}, statistics=stats)

    # --- persistence: config.json + model.safetensors, like ESVAModel --------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_dir(directory) as tmp:
            (tmp / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "library": "esva"})
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> PooledVoiceModel:
        from esva.model.esva_model import load_state, read_weights

        directory = Path(directory)
        config = PooledVoiceConfig.from_dict(
            read_json(directory / CONFIG_NAME), directory / CONFIG_NAME
        )
        model = cls(config)
        state, weights = read_weights(directory)
        load_state(model, state, weights)
        return model.eval()


def model_type(directory: str | Path) -> str:
    """The ``model_type`` a model folder's config.json declares (``"esva"`` when it has none)."""
    path = Path(directory) / CONFIG_NAME
    if not Path(directory).is_dir():
        raise EsvaError("model directory not found", directory)
    obj = read_json(path)
    return str(obj.get("model_type", "esva")) if isinstance(obj, dict) else "esva"


def load_model(directory: str | Path):
    """An ESVA model or a pooled voice model, as the folder's config.json says."""
    if model_type(directory) == MODEL_TYPE:
        return PooledVoiceModel.from_pretrained(directory)
    from esva.model.esva_model import ESVAModel

    return ESVAModel.from_pretrained(directory)


__all__ = [
    "MODEL_TYPE",
    "PooledOutput",
    "PooledVoiceConfig",
    "PooledVoiceModel",
    "batch_centre",
    "clip_normalise",
    "interleave",
    "load_model",
    "model_type",
    "pooled_statistics",
]
