"""Encoder registry: ``@register_encoder("name")`` on a factory; ``create_encoder("name")``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from esva.encoders.base import Encoder
from esva.errors import EsvaError

_FACTORIES: dict[str, Callable[..., Encoder]] = {}
_DESCRIPTIONS: dict[str, str] = {}

# Modules that register encoders when imported. Kept lazy so `import esva` stays light and an
# encoder whose optional dependency is missing does not break the others.
_ENCODER_MODULES: tuple[str, ...] = (
    # one line per module; each module registers its encoders with @register_encoder
    "esva.encoders.ssl_audio",
    "esva.encoders.vision",
    "esva.encoders.whisper",
    "esva.encoders.asr",
    "esva.encoders.fer_cnn",
    "esva.encoders.face_expert",
    "esva.encoders.face_ensemble",
    "esva.encoders.minilm",
    "esva.encoders.prosody",
)


def register_encoder(
    name: str, description: str = ""
) -> Callable[[Callable[..., Encoder]], Callable[..., Encoder]]:
    """Register ``factory(pretrained: bool = True, **kw) -> Encoder`` under ``name``."""

    def wrap(factory: Callable[..., Encoder]) -> Callable[..., Encoder]:
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            raise ValueError(f"encoder {name!r} registered twice")
        _FACTORIES[name] = factory
        _DESCRIPTIONS[name] = description or (factory.__doc__ or "").strip().split("\n")[0]
        return factory

    return wrap


# Where each built-in encoder lives, so that create_encoder imports only that module: importing
# them all pulled in transformers' HuBERT/ViT modelling code even when only whisper-tiny and
# fer-cnn were asked for (encoder set-up 9.2 s -> 7.4 s per extraction worker, measured on a
# loaded machine; most of the rest was importing transformers for Whisper, which the Whisper
# encoders no longer do: see esva.encoders.whisper_net).
_MODULE_OF: dict[str, str] = {
    **dict.fromkeys(("hubert", "wav2vec2", "wavlm"), "esva.encoders.ssl_audio"),
    **dict.fromkeys(("mae", "videomae", "clip", "eva"), "esva.encoders.vision"),
    **dict.fromkeys(("whisper-tiny", "whisper-base", "whisper"), "esva.encoders.whisper"),
    **dict.fromkeys(("asr-whisper-tiny", "asr-whisper-base"), "esva.encoders.asr"),
    "fer-cnn": "esva.encoders.fer_cnn",
    "face-expert": "esva.encoders.face_expert",
    "face-ensemble": "esva.encoders.face_ensemble",
    "minilm": "esva.encoders.minilm",
    "prosody": "esva.encoders.prosody",
}


def _load_all() -> None:
    for module in _ENCODER_MODULES:
        importlib.import_module(module)


def _load_for(name: str) -> None:
    """Import the module that registers ``name`` (all of them for an unknown name)."""
    if name in _FACTORIES:
        return
    if name in _MODULE_OF:
        importlib.import_module(_MODULE_OF[name])
    if name not in _FACTORIES:
        _load_all()


def encoder_names() -> set[str]:
    """Names ``create_encoder`` accepts, without importing the encoder modules."""
    return set(_MODULE_OF) | set(_FACTORIES)


def list_encoders() -> dict[str, str]:
    """Registered encoder names with a one-line description each."""
    _load_all()
    return dict(sorted(_DESCRIPTIONS.items()))


def create_encoder(name: str, pretrained: bool = True, **kwargs: Any) -> Encoder:
    """Build the encoder registered as ``name`` (``pretrained=False``: random weights)."""
    _load_for(name)
    if name not in _FACTORIES:
        known = ", ".join(sorted(_FACTORIES)) or "none"
        raise EsvaError(f"unknown encoder {name!r} (known: {known})")
    return _FACTORIES[name](pretrained=pretrained, **kwargs)
