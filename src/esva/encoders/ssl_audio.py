"""Self-supervised speech encoders: HuBERT, wav2vec 2.0 and WavLM through transformers.

ESVA's audio branch starts from HuBERT-style frame features. All three models share one shape:
a convolutional feature encoder (total stride 320 samples at 16 kHz, so 50 frames a second)
followed by a transformer, so one class serves all of them:

1. the clip is resampled to the feature extractor's rate (16 kHz) with soxr;
2. it is normalised as the checkpoint's ``preprocessor_config.json`` says (``do_normalize``:
   zero mean, unit variance over the whole clip), or as ``Wav2Vec2FeatureExtractor``'s default
   when the directory has none;
3. long audio runs in chunks (30 s by default) with extra context on both sides that is
   dropped afterwards, so memory stays bounded and frames away from chunk borders see the same
   neighbourhood as in one pass (base models' first-layer GroupNorm uses the whole clip's
   statistics, gathered in a cheap pre-pass); the chunks are stitched so the frame count is
   exactly what one pass over the whole clip would give;
4. the ``layer=`` option picks the hidden state(s) (:mod:`esva.encoders.layers`).

The frame rate comes from the checkpoint's own conv strides, never a constant.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import (
    HubertModel,
    PreTrainedModel,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
    WavLMModel,
)

from esva.data.streams import StreamFeatures
from esva.encoders.checkpoint_encoder import CheckpointEncoder, register_checkpoint_encoders
from esva.encoders.hf_checkpoint import Checkpoint
from esva.errors import EsvaError
from esva.media.types import AudioClip

# Hub ids used when no --path is given (they must already be in the user's HF cache). Base-size
# models: they run on a CPU laptop; pass a large checkpoint's directory with --path for more.
DEFAULT_MODEL_IDS = {
    "hubert": "facebook/hubert-base-ls960",
    "wav2vec2": "facebook/wav2vec2-base",
    "wavlm": "microsoft/wavlm-base-plus",
}


@dataclass
class SSLAudioConfig:
    """Options of an SSL speech encoder (everything but where the weights come from)."""

    layer: str | int = "last"  # see esva.encoders.layers
    chunk_s: float = 30.0  # audio per forward pass; bounds memory (attention is quadratic)
    context_s: float = 2.0  # extra audio each side of a chunk, run through the model and dropped
    normalize: bool | None = None  # None: the preprocessor config's do_normalize (else default)
    device: str = "cpu"


class SSLAudioEncoder(CheckpointEncoder):
    """Frame-level features (T, D) at the model's frame rate from a mono :class:`AudioClip`."""

    modality = "audio"

    def __init__(self, name: str, checkpoint: Checkpoint, cfg: SSLAudioConfig) -> None:
        model = checkpoint.model.to(cfg.device)
        super().__init__(name, checkpoint, model, model.config, cfg.layer, cfg.device)
        self.cfg = cfg
        config = model.config
        self.feature_extractor = Wav2Vec2FeatureExtractor.from_dict(checkpoint.preprocessor)
        if cfg.normalize is not None:
            self.feature_extractor.do_normalize = cfg.normalize
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        # Frame geometry of the conv feature encoder: frame t covers samples
        # [t * stride, t * stride + receptive_field).
        self.stride = math.prod(int(s) for s in config.conv_stride)
        self.receptive_field = _receptive_field(config.conv_kernel, config.conv_stride)
        self.fps = self.sample_rate / self.stride

    def num_frames(self, num_samples: int) -> int:
        """Frames the model yields for ``num_samples`` samples (the conv chain's output length)."""
        if num_samples < self.receptive_field:
            return 0
        return int(self.model._get_feat_extract_output_lengths(num_samples))

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        """(B, N) normalised samples -> (B, T, D) features of the chosen layer(s), with grad."""
        return self.hidden(input_values)

    @torch.inference_mode()
    def encode(self, inputs: AudioClip) -> StreamFeatures:
        samples = self._prepare(inputs)
        total = self.num_frames(len(samples))
        features = np.zeros((total, self.dim), np.float32)
        plan = self._chunks(total)
        with contextlib.ExitStack() as stack:
            if len(plan) > 1:
                stack.enter_context(self._whole_clip_group_norm(samples))
            for lo, hi, keep_lo, keep_hi in plan:
                first, last = lo * self.stride, (hi - 1) * self.stride + self.receptive_field
                if hi == total:  # last chunk: run to the clip's end, as one pass would
                    last = len(samples)
                x = torch.from_numpy(samples[first:last]).to(self.cfg.device)[None]
                chunk = self.forward(x)[0].float().cpu().numpy()
                if chunk.shape[0] != hi - lo:  # the geometry above must match the model's own
                    raise RuntimeError(f"chunk gave {chunk.shape[0]} frames, expected {hi - lo}")
                features[keep_lo:keep_hi] = chunk[keep_lo - lo : keep_hi - lo]
        return StreamFeatures(
            features=features,
            fps=self.fps,
            start_s=float(inputs.start_s),
            mask=np.ones(total, bool),
            record=self.record,
        )

    def _prepare(self, clip: AudioClip) -> np.ndarray:
        """Mono float32 at the model's rate, normalised like the feature extractor does."""
        samples = np.asarray(clip.samples, dtype=np.float32)
        if samples.ndim != 1:
            raise EsvaError(f"audio must be mono (N,), got shape {samples.shape}", clip.source)
        if clip.sample_rate != self.sample_rate and len(samples):
            samples = _resample(samples, clip.sample_rate, self.sample_rate, clip.source)
        if 0 < len(samples) < self.receptive_field:
            # Shorter than one frame's window (25 ms): pad so the clip still yields one frame.
            samples = np.pad(samples, (0, self.receptive_field - len(samples)))
        if not len(samples):
            return samples
        values = self.feature_extractor(
            samples, sampling_rate=self.sample_rate, return_tensors="np"
        ).input_values
        return np.ascontiguousarray(values[0], dtype=np.float32)

    @contextlib.contextmanager
    def _whole_clip_group_norm(self, samples: np.ndarray) -> Iterator[None]:
        """Make chunks normalise their first conv layer with the whole clip's statistics.

        Base-size checkpoints (``feat_extract_norm="group"``: HuBERT-base, wav2vec2-base) put a
        per-channel GroupNorm over *time* after the first conv layer, so a chunk on its own would
        be normalised with its own mean and variance, not the clip's. That layer is a single
        convolution, so its statistics over the whole clip are cheap to gather chunk by chunk
        (bounded memory); a forward hook then normalises every chunk with them, exactly as one
        pass would.
        """
        if getattr(self.model.config, "feat_extract_norm", "") != "group":
            yield
            return
        first = self.model.feature_extractor.conv_layers[0]
        conv, norm = first.conv, first.layer_norm
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        frames = (len(samples) - kernel) // stride + 1
        step = max(1, round(self.cfg.chunk_s * self.sample_rate / stride))
        total = torch.zeros(conv.out_channels, dtype=torch.float64)
        squares = torch.zeros(conv.out_channels, dtype=torch.float64)
        for lo in range(0, frames, step):
            hi = min(frames, lo + step)
            piece = samples[lo * stride : (hi - 1) * stride + kernel]
            x = torch.from_numpy(piece).to(self.cfg.device)[None, None]
            out = conv(x)[0].double().cpu()  # (C, hi - lo)
            total += out.sum(dim=1)
            squares += (out * out).sum(dim=1)
        mean = total / frames
        var = (squares / frames - mean * mean).clamp_min(0)  # biased, as GroupNorm's
        mean, var = (t.float().to(self.cfg.device)[None, :, None] for t in (mean, var))

        def fixed_stats(
            module: torch.nn.GroupNorm, args: tuple, output: torch.Tensor
        ) -> torch.Tensor:
            x = (args[0] - mean) / torch.sqrt(var + module.eps)
            return x * module.weight[None, :, None] + module.bias[None, :, None]

        handle = norm.register_forward_hook(fixed_stats)
        try:
            yield
        finally:
            handle.remove()

    def _chunks(self, total: int) -> list[tuple[int, int, int, int]]:
        """(lo, hi, keep_lo, keep_hi) frame ranges: run frames lo..hi, keep keep_lo..keep_hi."""
        core = max(1, round(self.cfg.chunk_s * self.fps))
        context = max(0, round(self.cfg.context_s * self.fps))
        if total <= core:
            return [(0, total, 0, total)] if total else []
        plan = []
        for keep_lo in range(0, total, core):
            keep_hi = min(keep_lo + core, total)
            plan.append(
                (max(0, keep_lo - context), min(total, keep_hi + context), keep_lo, keep_hi)
            )
        return plan


def _receptive_field(kernels: Any, strides: Any) -> int:
    """Samples one output frame of a chain of unpadded 1-D convolutions depends on."""
    field, jump = 1, 1
    for kernel, stride in zip(kernels, strides, strict=True):
        field += (int(kernel) - 1) * jump
        jump *= int(stride)
    return field


def _resample(samples: np.ndarray, rate_in: int, rate_out: int, source: Any) -> np.ndarray:
    try:
        import soxr
    except ImportError:
        raise EsvaError(
            f"audio is at {rate_in} Hz and the encoder needs {rate_out} Hz: install soxr "
            "(pip install soxr) to resample",
            source,
        ) from None
    return soxr.resample(samples, rate_in, rate_out, quality="HQ").astype(np.float32)


_MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    "hubert": HubertModel,
    "wav2vec2": Wav2Vec2Model,
    "wavlm": WavLMModel,
}
_DESCRIPTIONS = {
    "hubert": "HuBERT speech features (transformers HubertModel), 50 Hz",
    "wav2vec2": "wav2vec 2.0 speech features (transformers Wav2Vec2Model), 50 Hz",
    "wavlm": "WavLM speech features (transformers WavLMModel), 50 Hz",
}


_FACTORIES = register_checkpoint_encoders(
    _MODEL_CLASSES, DEFAULT_MODEL_IDS, _DESCRIPTIONS, SSLAudioConfig, SSLAudioEncoder
)
# hubert(pretrained=True, *, path=None, model_id=..., config=None, **SSLAudioConfig fields), ...
hubert, wav2vec2, wavlm = (_FACTORIES[name] for name in ("hubert", "wav2vec2", "wavlm"))
