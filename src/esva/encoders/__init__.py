"""Pretrained encoders behind one contract: ``create_encoder(name, pretrained=True, **kw)``.

Every encoder's ``encode(...)`` returns :class:`esva.data.streams.StreamFeatures`: a (T, D)
float32 sequence, its frame rate and start time, a mask of valid frames, and an
:class:`EncoderRecord` naming the encoder, its version and the sha256 of its weights (so a
feature file says exactly what produced it). That object is the clip's stream from here to the
model: the extractor keeps it as it is.
"""

from esva.data.streams import EncoderRecord, StreamFeatures
from esva.encoders.base import Encoder
from esva.encoders.registry import (
    create_encoder,
    encoder_names,
    list_encoders,
    register_encoder,
)

__all__ = [
    "Encoder",
    "EncoderRecord",
    "StreamFeatures",
    "create_encoder",
    "encoder_names",
    "list_encoders",
    "register_encoder",
]
