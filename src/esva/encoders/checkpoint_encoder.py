"""What the encoders around a transformers checkpoint share: ``esva.encoders.ssl_audio`` (HuBERT,
wav2vec 2.0, WavLM) and ``esva.encoders.vision`` (MAE, VideoMAE, CLIP, EVA).

Each holds a loaded :class:`~esva.encoders.hf_checkpoint.Checkpoint`, takes its features from the
hidden state(s) the ``layer=`` option picks (:mod:`esva.encoders.layers`) and records what was
loaded. Each is made by a factory of one signature, registered by
:func:`register_checkpoint_encoder`: ``name(pretrained=True, *, path=None, model_id=<the model's
default hub id>, config=None, **options)``, where ``options`` are the encoder's own settings
(``layer``, ``device``, ...).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from transformers import PretrainedConfig

from esva.encoders.base import Encoder
from esva.encoders.hf_checkpoint import Checkpoint, load_checkpoint
from esva.encoders.layers import LayerSelector
from esva.encoders.registry import register_encoder
from esva.settings import refuse_unknown


class CheckpointEncoder(Encoder):
    """A transformers model whose chosen hidden state(s) are the features."""

    def __init__(
        self,
        name: str,
        checkpoint: Checkpoint,
        model: torch.nn.Module,
        config: PretrainedConfig,
        layer: str | int,
        device: str,
    ) -> None:
        """``model``: the checkpoint's model (or the part of it that runs); ``config``: that
        part's config (its width and depth)."""
        super().__init__()
        self.name = name
        self.checkpoint = checkpoint
        self.model = model
        self.dim = int(config.hidden_size)
        num_states = int(config.num_hidden_layers) + 1  # embeddings + every block
        self.layers = LayerSelector(layer, num_states).to(device)
        self.version = checkpoint.version
        self.weights_sha256 = checkpoint.weights_sha256

    @property
    def record_layer(self) -> str:
        return str(self.layers.spec)

    def run_model(self, inputs: torch.Tensor) -> Any:
        """The model's output, with every hidden state when the layer choice needs them."""
        return self.model(inputs, output_hidden_states=self.layers.spec.needs_hidden_states)

    def hidden(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)``: the hidden state(s) ``layer=`` picks, with grad."""
        out = self.run_model(inputs)
        return self.layers(out.hidden_states, out.last_hidden_state)


def register_checkpoint_encoder(
    name: str,
    description: str,
    default_model_id: str | None,
    model_class: type,
    settings: type,
    make: Callable[[str, Checkpoint, Any], Encoder],
) -> Callable[..., Encoder]:
    """Register (and return) the factory of checkpoint encoder ``name`` (see the module doc).

    ``options`` are the fields of the dataclass ``settings`` (others are refused by name); the
    factory loads ``model_class`` (``path``, a local directory, wins over ``model_id``, a hub id
    in the local cache; ``pretrained=False``: random weights from ``config`` or the checkpoint's
    own) and returns ``make(name, checkpoint, settings(**options))``.
    """

    def factory(
        pretrained: bool = True,
        *,
        path: str | os.PathLike | None = None,
        model_id: str | None = default_model_id,
        config: PretrainedConfig | dict[str, Any] | None = None,
        **options: Any,
    ) -> Encoder:
        known = (f.name for f in dataclasses.fields(settings))
        refuse_unknown(options, known, None, f"option(s) of encoder {name!r}")
        chosen = settings(**options)
        checkpoint = load_checkpoint(
            name,
            model_class,
            pretrained=pretrained,
            path=path,
            model_id=model_id,
            config=config,
            trust_remote_code=getattr(chosen, "trust_remote_code", False),
        )
        return make(name, checkpoint, chosen)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"{description}."
    return register_encoder(name, description)(factory)


def register_checkpoint_encoders(
    model_classes: Mapping[str, type],
    default_model_ids: Mapping[str, str | None],
    descriptions: Mapping[str, str],
    settings: type,
    make: Callable[[str, Checkpoint, Any], Encoder],
) -> dict[str, Callable[..., Encoder]]:
    """:func:`register_checkpoint_encoder` for every name of ``model_classes``: ``{name:
    factory}``."""
    return {
        name: register_checkpoint_encoder(
            name, descriptions[name], default_model_ids[name], model_class, settings, make
        )
        for name, model_class in model_classes.items()
    }
