"""``face-expert``: esva's own face-expression CNN, trained on FER+ (8 classes).

A VGG-style network of 1.76 M parameters on 48x48 grey faces, trained on FER+ (FER2013 faces,
relabelled by 10 annotators each; soft targets from the votes) by the ``face-expert`` recipe on
the engine (:mod:`esva.recipes.face_expert`, ``esva train --config configs/face_expert.yaml``;
``benchmarks/train_face_expert.py --install`` rebuilds the shipped v2). The weights
ship inside the package (``esva/assets/face_expert/``: ``model.safetensors`` in fp16,
``config.json`` with the temperature and the measured scores, ``MODEL_CARD.md``); both files
are checked against the sha256 recorded below before anything is loaded.

Features per face frame (``dim = 264``):

* ``[0:256]``   the embedding (the 256-unit fully connected layer before the classifier);
* ``[256:264]`` the *calibrated* logits (logits / T, T fitted on FER+ valid) in
  :data:`CLASSES` order, so that their softmax is a calibrated probability.

Preprocessing: grey, keep the central ``crop`` share of the tracker's square crop, resize to
48x48 (OpenCV area/bilinear), ``(x / 255 - 0.5) / 0.25``. FER2013 faces are tightly framed
(brows to chin, little background); esva's tracker crops the Haar box grown by 10 % a side.
Measured on the MEAD dev clips (``results/faces.md``), that default crop already matches FER's
framing: keeping 0.8-1.1 of it scores the same, looser crops do worse; so ``crop`` = 1.0.

:func:`pool_clip` turns a track's per-frame probabilities into one clip-level distribution,
weighting the frames by the net's confidence, and names the peak frame's time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from esva.encoders.face_batches import FaceCnnEncoder, forward_in_batches
from esva.encoders.registry import register_encoder
from esva.errors import EsvaError
from esva.labelsets import FERPLUS_CLASSES
from esva.media.types import FaceTrack

CLASSES: tuple[str, ...] = FERPLUS_CLASSES
EMBED_DIM = 256
WIDTHS = (32, 64, 128, 256)
INPUT_SIZE = 48
# pool_clip's confidence exponent: 1, 2 and 4 all tie the mean on the MEAD/RAVDESS dev clips
# while neutral-distance weights lost clips; 2 is the middle of that plateau.
POOL_POWER = 2.0
ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "face_expert"
# sha256 of the shipped files, as printed by benchmarks/train_face_expert.py (and of config.json
# after the benchmark wrote its scores into it).
WEIGHTS_SHA256: dict[str, str] = {
    "model.safetensors": "dc493aa083f7172a22bec5248b2f54d3ff61b3a09b0dedc9ed66e8d1bbcd9c60",
    "config.json": "3561029763a116b17cce0a5e4c22426bfadc1ce9ae97b759f89e1a6d80b3494c",
}


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Grey faces in [0, 1] -> network input: ``(x - 0.5) / 0.25``."""
    return (x - 0.5) / 0.25


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class FaceExpertNet(nn.Module):
    """VGG-style CNN: grey (B, 1, 48, 48) -> embedding (B, 256), logits (B, 8)."""

    def __init__(self, num_classes: int = len(CLASSES), dropout: float = 0.3) -> None:
        super().__init__()
        c1, c2, c3, c4 = WIDTHS
        # One conv at full resolution (the costly stage on a CPU), two at each later scale.
        self.features = nn.Sequential(
            _conv_bn(1, c1),
            nn.MaxPool2d(2),  # 24
            _conv_bn(c1, c2),
            _conv_bn(c2, c2),
            nn.MaxPool2d(2),  # 12
            _conv_bn(c2, c3),
            _conv_bn(c3, c3),
            nn.MaxPool2d(2),  # 6
            _conv_bn(c3, c4),
            _conv_bn(c4, c4),
            nn.MaxPool2d(2),  # 3
        )
        self.embed = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(c4 * 9, EMBED_DIM), nn.ReLU(inplace=True)
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(EMBED_DIM, num_classes)

    @staticmethod
    def describe() -> str:
        return (
            "48x48 grey; conv3x3(32) pool; 2x conv3x3(64) pool; 2x conv3x3(128) pool; "
            "2x conv3x3(256) pool; (BN+ReLU after each conv); flatten 256x3x3; dropout 0.3; "
            "FC 256 ReLU (embedding); dropout 0.3; FC 8 (logits)"
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.embed(self.features(x))
        return emb, self.head(self.dropout(emb))

    @torch.no_grad()
    def fuse_batchnorm(self) -> FaceExpertNet:
        """Fold each BatchNorm into its conv (inference only: same outputs, fewer passes).

        The state dict changes (convs gain biases), so call this after ``load_state_dict``.
        """
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        self.eval()
        for block in self.features:
            if isinstance(block, nn.Sequential):
                block[0] = fuse_conv_bn_eval(block[0], block[1])
                block[1] = nn.Identity()
        return self


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """One temperature ``T`` minimising the NLL of ``softmax(logits / T)`` (LBFGS on log T)."""
    logits = logits.detach().float()
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels.long())
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


# --------------------------------------------------------------------------------------------
# Preprocessing and clip-level pooling
# --------------------------------------------------------------------------------------------


def preprocess_faces(crops: np.ndarray, crop: float = 1.0) -> np.ndarray:
    """uint8 ``(N, S, S, 1|3)`` (or ``(N, S, S)`` grey) -> ``(N, 1, 48, 48)`` network input.

    ``crop`` is the share of the side kept, centred (1.0: the whole tracker crop).
    """
    import cv2

    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[..., None]
    out = np.empty((len(crops), INPUT_SIZE, INPUT_SIZE), np.float32)
    for i, face in enumerate(crops):
        face = np.ascontiguousarray(face, dtype=np.uint8)
        g = face[..., 0] if face.shape[-1] == 1 else cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
        side = g.shape[0]
        keep = max(1, round(side * crop))
        if keep < side:
            o = (side - keep) // 2
            g = g[o : o + keep, o : o + keep]
        interp = cv2.INTER_AREA if g.shape[0] > INPUT_SIZE else cv2.INTER_LINEAR
        out[i] = cv2.resize(g, (INPUT_SIZE, INPUT_SIZE), interpolation=interp)
    return ((out / 255.0 - 0.5) / 0.25)[:, None]


@dataclass
class ClipExpression:
    """A clip's pooled expression: probabilities over CLASSES and its most expressive frame."""

    probabilities: np.ndarray  # (8,) sums to 1
    weights: np.ndarray  # (T,) frame weights used (0 where the mask is False), sum 1
    peak_index: int  # frame that shows the pooled label most (-1 when no frame has a face)
    peak_time_s: float  # its timestamp (nan-free: 0.0 when no face)

    @property
    def label(self) -> str:
        return CLASSES[int(np.argmax(self.probabilities))]


def pool_clip(
    probs: np.ndarray,
    timestamps_s: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    power: float = POOL_POWER,
) -> ClipExpression:
    """Pool per-frame probabilities ``(T, 8)`` into one clip distribution.

    Frame weights are ``max_c p_t(c) ** power`` over the frames with a face: the frames the net
    is sure of (a clear expression, a well-seen face) count more than blurred or in-between
    ones; ``power=0`` is the plain mean. The peak frame is the one with the highest probability
    of the pooled label. On the dev clips (``benchmarks/faces.py``) this rule with ``power`` 1-4
    ties the mean (MEAD 13/21), while weighting by distance from neutral (``1 - p(neutral)``)
    lost 2-3 MEAD clips: talking mouths look "surprised" in single frames, so a neutral clip's
    most un-neutral frames are mostly speech, not expression.
    """
    probs = np.asarray(probs, np.float64)
    n = len(probs)
    mask = np.ones(n, bool) if mask is None else np.asarray(mask, bool)
    times = np.arange(n, dtype=np.float64) if timestamps_s is None else np.asarray(timestamps_s)
    weights = np.zeros(n, np.float64)
    if n == 0 or not mask.any():
        uniform = np.full(len(CLASSES), 1.0 / len(CLASSES))
        return ClipExpression(uniform, weights, -1, 0.0)
    kept = probs[mask]
    w = np.clip(kept.max(axis=1), 1e-6, 1.0) ** power
    w /= w.sum()
    weights[mask] = w
    pooled = (w[:, None] * kept).sum(axis=0)
    pooled /= pooled.sum()
    peak = int(np.flatnonzero(mask)[int(np.argmax(kept[:, int(np.argmax(pooled))]))])
    return ClipExpression(pooled, weights, peak, float(times[peak]))


# --------------------------------------------------------------------------------------------
# The encoder
# --------------------------------------------------------------------------------------------


def load_asset(directory: Path | None = None, verify: bool = True) -> tuple[dict, dict, str]:
    """``(state dict fp32, config, weights sha256)`` of the shipped face expert, hash-checked."""
    from safetensors.torch import load_file

    from esva.assets import verify_files

    directory = Path(directory) if directory is not None else ASSET_DIR
    if verify:
        verify_files(directory, WEIGHTS_SHA256)
    weights = directory / "model.safetensors"
    try:
        state = load_file(str(weights))
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise EsvaError(f"cannot read the face expert ({exc})", weights) from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return state, config, WEIGHTS_SHA256["model.safetensors"]


@dataclass
class FaceExpertConfig:
    """Options of the ``face-expert`` encoder."""

    crop: float = 1.0  # central share of the tracker's crop side fed to the net (see module doc)
    batch_size: int = 128


class FaceExpertEncoder(FaceCnnEncoder):
    """esva's FER+ face expert: 256-d embedding + 8 calibrated logits per face frame."""

    embed_dim = EMBED_DIM  # the logits follow (probabilities: in the label order)
    version = "esva-face-expert-ferplus-v2"

    def __init__(self, config: FaceExpertConfig | None = None, pretrained: bool = True) -> None:
        super().__init__("face-expert", config or FaceExpertConfig(), CLASSES)
        if not 0.3 <= self.config.crop <= 1.0:
            raise EsvaError(f"face-expert crop must be in [0.3, 1], got {self.config.crop}")
        self.net = FaceExpertNet()
        self.temperature = 1.0
        if pretrained:
            state, meta, self.weights_sha256 = load_asset()
            self.net.load_state_dict(state, strict=True)
            self.temperature = float(meta["temperature"])
        # Inference only: BatchNorm folded into the convs, channels-last (oneDNN's layout).
        self.net.fuse_batchnorm().to(memory_format=torch.channels_last)
        self.eval()

    @property
    def record_layer(self) -> str:
        return f"fc embedding (256) + logits/T (8), T={self.temperature:.4f}"

    def forward_faces(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessed ``(N, 1, 48, 48)`` -> ``(embedding (N, 256), calibrated logits (N, 8))``."""
        dims = (EMBED_DIM, len(CLASSES))
        return forward_in_batches(
            self.net, faces, self.config.batch_size, dims, temperature=self.temperature
        )

    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        return preprocess_faces(crops, self.config.crop)

    def clip_expression(self, track: FaceTrack, power: float = POOL_POWER) -> ClipExpression:
        """Encode ``track`` and pool it to one clip-level expression (see :func:`pool_clip`)."""
        encoded = self.encode(track)
        probs = self.probabilities(encoded.features)
        return pool_clip(probs, np.asarray(track.timestamps_s), encoded.mask, power)


@register_encoder(
    "face-expert", "esva's FER+ face-expression CNN (8 classes, calibrated): 264-d/frame"
)
def face_expert(pretrained: bool = True, **kwargs) -> FaceExpertEncoder:
    """esva's own FER+ face-expression CNN (8 classes, calibrated logits)."""
    return FaceExpertEncoder(FaceExpertConfig(**kwargs), pretrained=pretrained)
