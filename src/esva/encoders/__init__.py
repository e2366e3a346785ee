"""Pretrained encoders behind one contract: ``create_encoder(name, pretrained=True, **kw)``.

Every encoder's ``encode(...)`` returns :class:`EncodedFeatures`: a (T, D) float32 sequence, its
frame rate and start time, a mask of valid frames, and a record naming the encoder, its version
and the sha256 of its weights (so a feature file says exactly what produced it).
"""

from esva.encoders.base import EncodedFeatures, Encoder, EncoderRecord
from esva.encoders.registry import (
    create_encoder,
    encoder_names,
    list_encoders,
    register_encoder,
)

__all__ = [
    "EncodedFeatures",
    "Encoder",
    "EncoderRecord",
    "create_encoder",
    "encoder_names",
    "list_encoders",
    "register_encoder",
]
