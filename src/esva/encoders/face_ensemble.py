"""``face-ensemble``: esva's face expert and fer-cnn pooled, with the training-set prior removed.

The face expert (``face-expert``, FER+ 8 classes) fits FER+ best; the zero-shot ``fer-cnn``
(mini-XCEPTION, FER2013's original labels, 7 classes) transfers better to posed faces it never
saw (CK+48). Both learned FER2013's class frequencies: disgust, fear and contempt are 0.6-2 % of
FER+ train, so on a user's clip, where any emotion may be as likely as another, they are rarely
said (CK+ disgust read as anger, anger as neutral). This encoder

1. takes each net's calibrated log-probabilities (the expert's ``logits / T``; fer-cnn's logits
   over :data:`FER_CNN_TEMPERATURE`, fitted on FER+ valid without contempt), fer-cnn's mapped to
   :data:`~esva.encoders.face_expert.CLASSES` (contempt: the expert's alone);
2. removes ``PRIOR_POWER`` x log(training prior) from each (logit adjustment: FER+ train's
   majority-label shares for the expert, FER2013 train's label shares for fer-cnn), so that the
   classes count as equally likely a priori;
3. pools them log-linearly, ``EXPERT_WEIGHT`` for the expert and the rest for fer-cnn, and scales
   the result by one temperature fitted on FER+ valid (so that its softmax is calibrated there).

``EXPERT_WEIGHT`` and ``PRIOR_POWER`` were chosen on FER+ valid (balanced accuracy) and the MEAD
and RAVDESS Actor_01 dev clips, never on CK+48 (``benchmarks/faces.py`` -> ``results/faces.md``).

Features per face frame (``dim = 392``): ``[0:256]`` the expert's embedding, ``[256:384]``
fer-cnn's, ``[384:392]`` the pooled calibrated logits in ``CLASSES`` order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from esva.data.streams import EncoderRecord
from esva.encoders import face_expert as fe
from esva.encoders import fer_cnn as fc
from esva.encoders.face_batches import FaceCnnEncoder
from esva.encoders.registry import register_encoder
from esva.errors import EsvaError

CLASSES = fe.CLASSES
FER_TO_PLUS = {  # fer-cnn label -> FER+ class
    "angry": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happiness",
    "sad": "sadness",
    "surprise": "surprise",
    "neutral": "neutral",
}
# fer-cnn column -> index in CLASSES
FER_CNN_INDEX: tuple[int, ...] = tuple(CLASSES.index(FER_TO_PLUS[c]) for c in fc.LABELS)
CONTEMPT = CLASSES.index("contempt")
# FER+ train (FER2013Train, majority vote in the 8 emotions, n = 28,385): label shares.
EXPERT_PRIOR: tuple[float, ...] = (
    0.362692,
    0.265140,
    0.125313,
    0.124361,
    0.086771,
    0.006729,
    0.023076,
    0.005919,
)
# FER2013 train (28,709 faces, the labels fer-cnn learned): angry 3995, disgust 436, fear 4097,
# happy 7215, sad 4830, surprise 3171, neutral 4965; in fc.LABELS order.
FER_CNN_COUNTS: tuple[int, ...] = (3995, 436, 4097, 7215, 4830, 3171, 4965)
FER_CNN_TEMPERATURE = 1.3918  # fitted on FER+ valid without contempt (NLL), benchmarks/faces.py
EXPERT_WEIGHT = 0.7
PRIOR_POWER = 0.9
OUTPUT_TEMPERATURE = 0.8211  # fitted on FER+ valid (NLL) for the pool above, benchmarks/faces.py


def _log_prior(shares: np.ndarray) -> np.ndarray:
    shares = np.asarray(shares, np.float64)
    return np.log(shares / shares.sum())


def pool_logits(
    expert_logits: np.ndarray,
    fer_logits: np.ndarray,
    expert_weight: float = EXPERT_WEIGHT,
    prior_power: float = PRIOR_POWER,
    output_temperature: float = OUTPUT_TEMPERATURE,
) -> np.ndarray:
    """The expert's calibrated logits ``(N, 8)`` and fer-cnn's raw logits ``(N, 7)`` -> pooled
    logits ``(N, 8)`` in ``CLASSES`` order (their softmax is the ensemble's distribution)."""
    e = torch.log_softmax(torch.from_numpy(np.asarray(expert_logits, np.float32)).double(), -1)
    e = e.numpy() - prior_power * _log_prior(np.asarray(EXPERT_PRIOR))
    if expert_weight >= 1.0:
        pooled = e
    else:
        f7 = torch.from_numpy(np.asarray(fer_logits, np.float32)).double() / FER_CNN_TEMPERATURE
        f7 = torch.log_softmax(f7, -1).numpy() - prior_power * _log_prior(
            np.asarray(FER_CNN_COUNTS)
        )
        f = e.copy()  # contempt: fer-cnn has none, so the expert's term stands for it
        f[:, list(FER_CNN_INDEX)] = f7
        pooled = expert_weight * e + (1.0 - expert_weight) * f
    pooled = pooled - pooled.max(axis=-1, keepdims=True)
    return (pooled / output_temperature).astype(np.float32)


@dataclass
class FaceEnsembleConfig:
    """Options of the ``face-ensemble`` encoder."""

    expert_weight: float = EXPERT_WEIGHT  # log-linear weight of the face expert (rest: fer-cnn)
    prior_power: float = PRIOR_POWER  # 0: keep the training priors; 1: remove them fully
    crop: float = 1.0  # the face expert's framing (see esva.encoders.face_expert)
    batch_size: int = 128


class FaceEnsembleEncoder(FaceCnnEncoder):
    """Face expert + fer-cnn, prior-corrected and log-linearly pooled: 392-d per face frame."""

    embed_dim = fe.EMBED_DIM + fc.EMBED_DIM  # the pooled logits follow

    def __init__(self, config: FaceEnsembleConfig | None = None, pretrained: bool = True) -> None:
        super().__init__("face-ensemble", config or FaceEnsembleConfig(), CLASSES)
        if not 0.0 <= self.config.expert_weight <= 1.0:
            raise EsvaError(f"expert_weight must be in [0, 1], got {self.config.expert_weight}")
        if not 0.0 <= self.config.prior_power <= 1.0:
            raise EsvaError(f"prior_power must be in [0, 1], got {self.config.prior_power}")
        batch = self.config.batch_size
        self.expert = fe.FaceExpertEncoder(
            fe.FaceExpertConfig(crop=self.config.crop, batch_size=batch), pretrained=pretrained
        )
        self.fer = fc.FerCnnEncoder(fc.FerCnnConfig(batch_size=batch), pretrained=pretrained)
        self.eval()

    @property
    def record(self) -> EncoderRecord:
        e, f = self.expert.record, self.fer.record
        return EncoderRecord(
            name=self.name,
            version=f"esva-face-ensemble-v2 ({e.version} + {f.version})",
            weights_sha256=e.weights_sha256,
            layer=(
                f"expert emb (256) + fer-cnn emb (128) + pooled logits (8): expert weight "
                f"{self.config.expert_weight:g}, prior power {self.config.prior_power:g}; "
                f"fer-cnn sha256 {f.weights_sha256}"
            ),
        )

    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        """Each net preprocesses for itself (48 px for the expert, 64 px for fer-cnn)."""
        return np.asarray(crops)

    def forward_faces(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 crops ``(N, S, S, 1|3)`` -> ``(embeddings (N, 384), pooled logits (N, 8))``."""
        e_emb, e_logits = self.expert.forward_faces(self.expert.preprocess(faces))
        f_emb, f_logits = self.fer.forward_faces(self.fer.preprocess(faces))
        pooled = pool_logits(e_logits, f_logits, self.config.expert_weight, self.config.prior_power)
        return np.concatenate([e_emb, f_emb], axis=1), pooled

    def clip_expression(self, track, power: float = fe.POOL_POWER) -> fe.ClipExpression:
        """Encode ``track`` and pool it to one clip-level expression (see ``pool_clip``)."""
        encoded = self.encode(track)
        probs = self.probabilities(encoded.features)
        return fe.pool_clip(probs, np.asarray(track.timestamps_s), encoded.mask, power)


@register_encoder(
    "face-ensemble",
    "face-expert + fer-cnn, prior-corrected log-linear pool (8 classes, calibrated): 392-d/frame",
)
def face_ensemble(pretrained: bool = True, **kwargs) -> FaceEnsembleEncoder:
    """esva's face expert pooled with fer-cnn, the FER training priors removed."""
    return FaceEnsembleEncoder(FaceEnsembleConfig(**kwargs), pretrained=pretrained)
