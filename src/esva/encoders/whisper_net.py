"""Whisper's audio encoder and log-mel front end in plain torch, for inference.

Why not transformers' ``WhisperEncoder`` here. With transformers 5.x, importing
``transformers.models.whisper.modeling_whisper`` pulls in ``torch.distributed.tensor``,
``torch._dynamo``, sympy, ``scipy.optimize``, accelerate and psutil (its model-loading, masking
and generation layers import them at module level): the Whisper encoder's set-up took 5.3-5.6 s
of a 10-12 s cold ``esva predict`` on the shared 2-core machine (``benchmarks/predict_speed.py``),
more than twice the whole start-up goal for an audio file (2.5 s), for an encoder of ~60 lines.
No environment variable or narrower import path avoids it: the package ``__init__`` is lazy, but
``modeling_whisper`` itself imports the heavy layers, and ``WhisperFeatureExtractor`` alone costs
``import transformers`` (0.7-1.4 s). This is a deliberate exception to "use the field's
libraries", for inference only: ``esva``'s Whisper encoders (:mod:`esva.encoders.whisper`) run
this module, and transformers stays the reference: ``tests/test_whisper_net.py`` loads the same
weights into transformers' ``WhisperEncoder`` / ``WhisperFeatureExtractor`` and checks every
hidden state and the log-mel to 1e-5 (they came out bit-identical, torch 2.13 / transformers
5.24, on the shipped whisper-tiny and whisper-base weights). :mod:`esva.media.faces` runs MTCNN
in plain torch for a similar reason. transformers is still what loads a hub / local Whisper
checkpoint (``create_encoder("whisper", path=...)``) and what decodes speech
(:mod:`esva.encoders.asr`); both import it only when used.

Parameter names are those of transformers' ``WhisperEncoder`` (``conv1``, ``conv2``,
``embed_positions.weight``, ``layers.{i}.self_attn.{q,k,v,out}_proj``, ``self_attn_layer_norm``,
``fc1``, ``fc2``, ``final_layer_norm``, ``layer_norm``), so its state dict loads unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from esva.media.mel import mel_filter_bank

SAMPLE_RATE = 16_000
N_FFT = 400  # 25 ms window
HOP_LENGTH = 160  # 10 ms: 100 mel frames per second
N_SAMPLES_30S = 30 * SAMPLE_RATE  # Whisper's context


@dataclass(frozen=True)
class WhisperDims:
    """Shape of a Whisper encoder (``WhisperConfig``'s encoder fields under shorter names)."""

    n_mels: int = 80
    d_model: int = 384
    n_layers: int = 4
    n_heads: int = 6
    ffn_dim: int = 1536
    n_positions: int = 1500  # encoder frames in a 30 s window

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], n_heads: int) -> WhisperDims:
        """Dimensions read off an encoder state dict (head count is not in any shape)."""
        n_positions, d_model = sd["embed_positions.weight"].shape
        layers = {k.split(".")[1] for k in sd if k.startswith("layers.")}
        return cls(
            n_mels=int(sd["conv1.weight"].shape[1]),
            d_model=int(d_model),
            n_layers=len(layers),
            n_heads=int(n_heads),
            ffn_dim=int(sd["layers.0.fc1.weight"].shape[0]),
            n_positions=int(n_positions),
        )


# ----------------------------------------------------------------------------- log-mel


@lru_cache(maxsize=4)
def mel_filters(n_mels: int = 80) -> np.ndarray:
    """(n_fft/2 + 1, n_mels) Slaney filters from 0 to 8 kHz: the bank Whisper was trained with
    (``librosa.filters.mel(sr=16000, n_fft=400)``)."""
    return mel_filter_bank(1 + N_FFT // 2, n_mels, 0.0, 8000.0, SAMPLE_RATE)


def log_mel_spectrogram(
    samples: np.ndarray, n_mels: int = 80, pad_to_30s: bool = False
) -> torch.Tensor:
    """(1, n_mels, frames) log-mel of 16 kHz mono ``samples``, as Whisper computes it.

    Hann-windowed STFT (400 samples, hop 160, centred with reflection), power spectrum without
    the last frame, mel filters, ``log10`` clamped at 1e-10, floored 8 decades below the clip's
    maximum, then ``(x + 4) / 4``. Samples past 30 s (one Whisper window) are cut;
    ``pad_to_30s`` zero-pads shorter ones to 30 s, as Whisper was trained. Equals
    ``WhisperFeatureExtractor(...)(samples, padding="longest" | "max_length").input_features``
    (checked by the tests).
    """
    audio = np.asarray(samples, dtype=np.float32).reshape(-1)[:N_SAMPLES_30S]
    if pad_to_30s:
        audio = np.pad(audio, (0, N_SAMPLES_30S - len(audio)))
    waveform = torch.from_numpy(np.ascontiguousarray(audio))
    window = torch.hann_window(N_FFT)
    stft = torch.stft(waveform, N_FFT, HOP_LENGTH, window=window, return_complex=True)
    power = (stft[..., :-1].abs() ** 2).contiguous()
    mel = torch.from_numpy(mel_filters(n_mels)).to(torch.float32).T @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0)[None]


# ----------------------------------------------------------------------------- encoder


class WhisperSelfAttention(nn.Module):
    """Multi-head self-attention; the key projection has no bias (Whisper's layout)."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.scaling = self.head_dim**-0.5
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.n_heads, self.head_dim).transpose(1, 2).contiguous()

        # The query is scaled before the product, as Whisper (and transformers) do: the order
        # of the scaling changes the float result.
        q = heads(self.q_proj(x) * self.scaling)
        k, v = heads(self.k_proj(x)), heads(self.v_proj(x))
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, -1))


class WhisperEncoderLayer(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(LN(x))``, then ``x + fc2(gelu(fc1(LN(x))))``."""

    def __init__(self, d_model: int, n_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.self_attn = WhisperSelfAttention(d_model, n_heads)
        self.self_attn_layer_norm = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, d_model)
        self.final_layer_norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x))
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class PositionTable(nn.Module):
    """The learned position table (``embed_positions.weight``), sliced, never looked up.

    Not an ``nn.Embedding``: its ``normal_`` initialisation on the meta device (where the
    encoder is built before its weights are assigned) imports ``torch._dynamo``, ~2.3 s.
    """

    def __init__(self, n_positions: int, d_model: int) -> None:
        super().__init__()
        # zeros, not empty: a net used before its weights are loaded must never read garbage
        self.weight = nn.Parameter(torch.zeros(n_positions, d_model), requires_grad=False)

    @property
    def num_embeddings(self) -> int:
        return self.weight.shape[0]


class WhisperEncoderNet(nn.Module):
    """Whisper's audio encoder: two GELU convolutions (the second with stride 2: 100 Hz mel ->
    50 Hz), learned positions, pre-LN blocks, a final LayerNorm."""

    def __init__(self, dims: WhisperDims) -> None:
        super().__init__()
        self.dims = dims
        d = dims.d_model
        self.conv1 = nn.Conv1d(dims.n_mels, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.embed_positions = PositionTable(dims.n_positions, d)
        self.layers = nn.ModuleList(
            WhisperEncoderLayer(d, dims.n_heads, dims.ffn_dim) for _ in range(dims.n_layers)
        )
        self.layer_norm = nn.LayerNorm(d)

    @property
    def max_frames(self) -> int:
        """Encoder frames in one 30 s window (1500)."""
        return self.dims.n_positions

    def hidden_states(self, mel: torch.Tensor) -> list[torch.Tensor]:
        """All hidden states for log-mel ``mel`` (B, n_mels, T), T <= 2 * max_frames.

        transformers' ``output_hidden_states`` convention: index 0 is the input embedding,
        ``i`` the output of layer ``i``, and the last one is after the final LayerNorm. Any
        length runs (the positions are sliced), not only the 3000 frames of a 30 s window.
        """
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).permute(0, 2, 1)  # (B, T/2, D)
        if x.shape[1] > self.max_frames:
            raise ValueError(f"{x.shape[1]} frames > {self.max_frames}: cut into windows first")
        x = x + self.embed_positions.weight[: x.shape[1]]
        states = [x]
        for layer in self.layers:
            x = layer(x)
            states.append(x)
        states[-1] = self.layer_norm(x)
        return states

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """The last hidden state (after the final LayerNorm)."""
        return self.hidden_states(mel)[-1]


def random_encoder(dims: WhisperDims, seed: int = 0) -> WhisperEncoderNet:
    """An encoder with seeded random weights (``pretrained=False``), the caller's RNG untouched.

    Weights ~ N(0, 0.02) and zero biases, Whisper's initialisation in transformers, so that
    activations stay in the trained model's range; positions are Whisper's sinusoids.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = WhisperEncoderNet(dims)
        with torch.no_grad():
            for module in net.modules():
                if isinstance(module, (nn.Linear, nn.Conv1d)):
                    module.weight.normal_(0.0, 0.02)
                    if module.bias is not None:
                        module.bias.zero_()
            net.embed_positions.weight.copy_(sinusoids(dims.n_positions, dims.d_model))
    return net.eval()


def sinusoids(length: int, channels: int, max_timescale: float = 10_000.0) -> torch.Tensor:
    """Whisper's sinusoidal position table: ``[sin | cos]`` over log-spaced timescales."""
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-increment * torch.arange(channels // 2, dtype=torch.float32))
    scaled = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cat([scaled.sin(), scaled.cos()], dim=1)
