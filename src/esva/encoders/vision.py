"""Face-track encoders through transformers: MAE, VideoMAE, CLIP and EVA.

Input is a :class:`~esva.media.types.FaceTrack` (square RGB crops, a mask of frames with a face,
timestamps). Crops are resized with OpenCV to the model's ``image_size`` and normalised with the
mean/std of the checkpoint's ``preprocessor_config.json`` (the model family's defaults when the
directory has none); no torchvision or PIL is involved.

Two kinds of output:

* per-frame models (``mae``, ``clip``, ``eva``): one vector per track frame, at the track's frame
  rate. ``pool="cls"`` takes the class token, ``pool="mean"`` the mean of the patch tokens (class
  token excluded). Defaults: CLS for CLIP and EVA (their contrastive objective trains it), mean for
  MAE (its pre-training never trains the CLS token; the MAE paper fine-tunes with global pooling).
  Frames without a face are not run through the model: their features are zero, mask False.
* ``videomae``: windows of ``num_frames`` (16) frames taken every ``window_stride`` frames, one
  vector per window (the mean of all tokens: VideoMAE has no class token). The sequence's fps is
  windows per second and ``start_s`` the first window's centre. Within a window, frames without a
  face are filled with the nearest frame that has one; a window with fewer than
  ``min_face_fraction`` face frames is zero, mask False.

The ``layer=`` option (:mod:`esva.encoders.layers`) picks the hidden state(s) before pooling;
``"last"`` is the model's ``last_hidden_state`` (for CLIP that is before ``post_layernorm`` and the
projection, for MAE after its final ``layernorm``).

EVA: timm's EVA models cannot be used here (timm imports torchvision at import time, and
torchvision is not installable next to esva's CPU torch), and transformers has no EVA class. So
``eva`` loads any transformers-format checkpoint through ``AutoModel`` (``trust_remote_code=True``
for EVA-CLIP exports that ship their own modelling code); when the model is a full image-text
model, its ``vision_model`` tower is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from transformers import (
    AutoModel,
    CLIPVisionModel,
    PretrainedConfig,
    VideoMAEModel,
    ViTMAEModel,
)
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
)

from esva.data.streams import StreamFeatures
from esva.encoders.checkpoint_encoder import CheckpointEncoder, register_checkpoint_encoders
from esva.encoders.hf_checkpoint import Checkpoint
from esva.errors import EsvaError
from esva.media.types import FaceTrack

# Hub ids used when no --path is given (they must already be in the user's HF cache). EVA has no
# transformers-native checkpoint to default to: it always needs --path or model_id.
DEFAULT_MODEL_IDS: dict[str, str | None] = {
    "mae": "facebook/vit-mae-base",
    "videomae": "MCG-NJU/videomae-base",
    "clip": "openai/clip-vit-base-patch32",
    "eva": None,
}
_DEFAULT_POOL = {"mae": "mean", "clip": "cls", "eva": "cls", "videomae": "mean"}
# Normalisation when the checkpoint has no preprocessor config: what each family was trained with.
_DEFAULT_MEAN_STD = {
    "mae": (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
    "videomae": (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
    "clip": (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
    "eva": (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
}


@dataclass
class VisionConfig:
    """Options of a face-track encoder (everything but where the weights come from)."""

    layer: str | int = "last"  # see esva.encoders.layers
    pool: str | None = None  # "cls" | "mean"; None: the model's default (module docstring)
    batch_size: int = 32  # frames per forward pass
    device: str = "cpu"
    trust_remote_code: bool = False  # eva only: run modelling code shipped in the checkpoint
    # videomae only
    window_stride: int | None = None  # frames between window starts; None: num_frames // 2
    frame_step: int = 1  # take every k-th track frame inside a window
    min_face_fraction: float = 0.5  # share of face frames a window needs to count as valid


class _Pixels:
    """uint8 RGB crops -> normalised float tensors at the model's input size (OpenCV resize)."""

    def __init__(self, name: str, config: PretrainedConfig, preprocessor: dict[str, Any]) -> None:
        size = _image_size(config)
        self.height, self.width = (
            (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        )
        mean, std = _DEFAULT_MEAN_STD[name]
        if preprocessor.get("do_normalize", True) is False:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        else:
            mean = preprocessor.get("image_mean", mean)
            std = preprocessor.get("image_std", std)
        scale = (
            preprocessor.get("rescale_factor", 1 / 255)
            if preprocessor.get("do_rescale", True)
            else 1.0
        )
        self.scale = np.float32(scale)
        self.mean = np.asarray(mean, np.float32).reshape(1, 1, 3)
        self.std = np.asarray(std, np.float32).reshape(1, 1, 3)

    def __call__(self, crops: np.ndarray) -> torch.Tensor:
        """(B, S, S, 3) uint8 -> (B, 3, H, W) float32."""
        out = np.empty((len(crops), 3, self.height, self.width), np.float32)
        for i, crop in enumerate(crops):
            if crop.shape[:2] != (self.height, self.width):
                # INTER_AREA when shrinking avoids aliasing; bicubic when enlarging, as CLIP does.
                shrink = crop.shape[0] > self.height or crop.shape[1] > self.width
                interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
                crop = cv2.resize(crop, (self.width, self.height), interpolation=interp)
            pixels = (crop.astype(np.float32) * self.scale - self.mean) / self.std
            out[i] = pixels.transpose(2, 0, 1)
        return torch.from_numpy(out)


class _VisionEncoder(CheckpointEncoder):
    """What the per-frame and the video encoder share: the image tower, pooling, record."""

    modality = "visual"
    prefix_tokens = 1  # class token(s) ahead of the patch tokens

    def __init__(self, name: str, checkpoint: Checkpoint, cfg: VisionConfig) -> None:
        model = checkpoint.model.to(cfg.device)
        # A full image-text model (CLIP-style EVA exports): keep only the image tower.
        tower = getattr(model, "vision_model", model)
        config = _vision_config(checkpoint.model.config)
        super().__init__(name, checkpoint, tower, config, cfg.layer, cfg.device)
        self.cfg = cfg
        self.pool = cfg.pool or _DEFAULT_POOL[name]
        if self.pool not in ("cls", "mean"):
            raise EsvaError(f"encoder {name!r}: pool must be 'cls' or 'mean', not {self.pool!r}")
        if self.pool == "cls" and self.prefix_tokens == 0:
            raise EsvaError(f"encoder {name!r} has no class token; use pool='mean'")
        self.pixels = _Pixels(name, config, checkpoint.preprocessor)

    @property
    def record_layer(self) -> str:
        return f"{self.layers.spec}, {'cls token' if self.pool == 'cls' else 'token mean'}"

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Normalised pixels -> (B, D) pooled features of the chosen layer(s); differentiable."""
        tokens = self.hidden(pixel_values)
        if self.pool == "cls":
            return tokens[:, 0]
        return tokens[:, self.prefix_tokens :].mean(dim=1)


class FrameEncoder(_VisionEncoder):
    """One vector per face-track frame (MAE, CLIP, EVA)."""

    def __init__(self, name: str, checkpoint: Checkpoint, cfg: VisionConfig) -> None:
        super().__init__(name, checkpoint, cfg)
        if isinstance(self.model, ViTMAEModel):
            # MAE drops 75% of the patches at random by default; a feature extractor must see all
            # of them in their own order (mask_ratio 0 + sorted noise in run_model).
            self.model.config.mask_ratio = 0.0

    def run_model(self, pixel_values: torch.Tensor) -> Any:
        if isinstance(self.model, ViTMAEModel):
            patches = self.model.embeddings.patch_embeddings.num_patches
            noise = torch.arange(patches, dtype=torch.float32, device=pixel_values.device)
            return self.model(
                pixel_values,
                noise=noise.expand(len(pixel_values), patches),
                output_hidden_states=self.layers.spec.needs_hidden_states,
            )
        return super().run_model(pixel_values)

    @torch.inference_mode()
    def encode(self, inputs: FaceTrack) -> StreamFeatures:
        crops, mask, times = _check_track(inputs)
        features = np.zeros((len(crops), self.dim), np.float32)
        valid = np.flatnonzero(mask)
        for batch in _batches(valid, max(1, self.cfg.batch_size)):
            pixels = self.pixels(crops[batch]).to(self.cfg.device)
            features[batch] = self.forward(pixels).float().cpu().numpy()
        return StreamFeatures(
            features=features,
            fps=_mean_fps(times),
            start_s=float(times[0]) if len(times) else 0.0,
            mask=mask.copy(),
            record=self.record,
        )


class VideoMAEEncoder(_VisionEncoder):
    """One vector per window of ``num_frames`` face-track frames (VideoMAE)."""

    prefix_tokens = 0  # VideoMAE has no class token

    def __init__(self, name: str, checkpoint: Checkpoint, cfg: VisionConfig) -> None:
        super().__init__(name, checkpoint, cfg)
        self.num_frames = int(self.model.config.num_frames)
        self.window_stride = cfg.window_stride or max(1, self.num_frames // 2)
        self.frame_step = max(1, int(cfg.frame_step))
        # Track frames one window spans, first to last sampled frame inclusive.
        self.span = (self.num_frames - 1) * self.frame_step + 1

    def windows(self, num_track_frames: int) -> np.ndarray:
        """(W, num_frames) track-frame indices; the last window repeats the final frame if short."""
        if num_track_frames == 0:
            return np.zeros((0, self.num_frames), np.int64)
        extra = max(0, num_track_frames - self.span)
        count = 1 + math.ceil(extra / self.window_stride)
        starts = np.arange(count) * self.window_stride
        index = starts[:, None] + np.arange(self.num_frames)[None] * self.frame_step
        return np.minimum(index, num_track_frames - 1)

    @torch.inference_mode()
    def encode(self, inputs: FaceTrack) -> StreamFeatures:
        crops, mask, times = _check_track(inputs)
        windows = self.windows(len(crops))
        features = np.zeros((len(windows), self.dim), np.float32)
        valid = np.zeros(len(windows), bool)
        if mask.any():
            filled = crops[_nearest_valid(mask)]  # frames without a face borrow a neighbour's
            coverage = mask[windows].mean(axis=1)
            valid = coverage >= max(self.cfg.min_face_fraction, 1e-9)
            per_batch = max(1, self.cfg.batch_size // self.num_frames)
            for batch in _batches(np.flatnonzero(valid), per_batch):
                frames = filled[windows[batch].reshape(-1)]
                pixels = self.pixels(frames).reshape(
                    len(batch), self.num_frames, 3, self.pixels.height, self.pixels.width
                )
                features[batch] = self.forward(pixels.to(self.cfg.device)).float().cpu().numpy()
        track_fps = _mean_fps(times)
        # Window w is centred on nominal track frame w * stride + (span - 1) / 2.
        centre = (self.span - 1) / 2
        start_s = (
            float(times[0]) + (centre / track_fps if track_fps > 0 else 0.0) if len(times) else 0.0
        )
        return StreamFeatures(
            features=features,
            fps=track_fps / self.window_stride,
            start_s=start_s,
            mask=valid,
            record=self.record,
        )


def _check_track(track: FaceTrack) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    crops = np.asarray(track.crops)
    mask = np.asarray(track.mask, bool)
    times = np.asarray(track.timestamps_s, np.float64)
    if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
        raise EsvaError(
            f"face crops must be (N, S, S, 3) uint8 RGB, got {crops.shape} {crops.dtype}",
            track.source,
        )
    if not len(crops) == len(mask) == len(times):
        raise EsvaError(
            f"face track lengths differ: {len(crops)} crops, {len(mask)} mask, {len(times)} times",
            track.source,
        )
    return crops, mask, times


def _batches(indices: np.ndarray, size: int) -> list[np.ndarray]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def _mean_fps(times: np.ndarray) -> float:
    """Mean frame rate from timestamps (as VideoFrames.fps); 0 for fewer than two frames."""
    if len(times) < 2:
        return 0.0
    span = float(times[-1] - times[0])
    return (len(times) - 1) / span if span > 0 else 0.0


def _nearest_valid(mask: np.ndarray) -> np.ndarray:
    """For every frame, the index of the nearest frame with a face (itself when it has one)."""
    valid = np.flatnonzero(mask)
    pos = np.clip(np.searchsorted(valid, np.arange(len(mask))), 1, max(1, len(valid) - 1))
    if len(valid) == 1:
        return np.full(len(mask), valid[0])
    left, right = valid[pos - 1], valid[pos]
    here = np.arange(len(mask))
    return np.where(here - left <= right - here, left, right)


def _vision_config(config: PretrainedConfig) -> PretrainedConfig:
    """The image tower's config (a CLIP-style config nests it as ``vision_config``)."""
    nested = getattr(config, "vision_config", None)
    return config if nested is None else nested


def _image_size(config: PretrainedConfig) -> int | tuple[int, int]:
    size = getattr(config, "image_size", None)
    if size is None:
        raise EsvaError(f"the model config ({type(config).__name__}) has no image_size")
    return size if isinstance(size, int) else tuple(size)


_MODEL_CLASSES: dict[str, type] = {
    "mae": ViTMAEModel,
    "videomae": VideoMAEModel,
    "clip": CLIPVisionModel,
    "eva": AutoModel,  # any transformers-format EVA(-CLIP) checkpoint (see the module doc)
}
_DESCRIPTIONS = {
    "mae": "ViT-MAE per-frame face features (transformers ViTMAEModel, all patches)",
    "videomae": "VideoMAE face-clip features, one per 16-frame window",
    "clip": "CLIP image-tower per-frame face features (transformers CLIPVisionModel)",
    "eva": "EVA(-CLIP) per-frame face features from a transformers-format checkpoint",
}


def _make(name: str, checkpoint: Checkpoint, cfg: VisionConfig) -> _VisionEncoder:
    encoder_class = VideoMAEEncoder if name == "videomae" else FrameEncoder
    return encoder_class(name, checkpoint, cfg)


_FACTORIES = register_checkpoint_encoders(
    _MODEL_CLASSES, DEFAULT_MODEL_IDS, _DESCRIPTIONS, VisionConfig, _make
)
# mae(pretrained=True, *, path=None, model_id=..., config=None, **VisionConfig fields), ...
mae, videomae, clip, eva = (_FACTORIES[name] for name in ("mae", "videomae", "clip", "eva"))
