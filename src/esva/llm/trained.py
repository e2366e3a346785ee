"""A trained LLM folder (``esva train-llm``'s ``best/``): the model and its data provenance.

Written by the recipe (:mod:`esva.recipes.train_llm`) and read at answer time (``esva explain
--model DIR``, ``esva serve --llm-model DIR``): the folder holds :class:`EmotionLLM`'s adapters,
projectors and config and, beside them, :data:`DATA_META` (the classes, streams and feature
statistics the model was trained with, :func:`esva.llm.data.data_meta`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from esva.errors import EsvaError
from esva.io import atomic_dir, read_json, write_json
from esva.llm.data import META_FORMAT
from esva.llm.model import EmotionLLM

DATA_META = "esva_llm_data.json"  # beside esva_llm.json in a trained model directory


def save_trained(model: EmotionLLM, directory: str | Path, meta: Mapping[str, Any]) -> Path:
    """The model directory (adapters, projector, config) plus the data provenance, atomically."""
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        model.save_pretrained(tmp)
        write_json(tmp / DATA_META, dict(meta))
    return directory


def load_trained(
    directory: str | Path, *, download: bool = True, dtype: str | None = None
) -> tuple[EmotionLLM, dict[str, Any]]:
    """A :func:`save_trained` directory -> (model in eval mode, data provenance)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise EsvaError("model folder not found", directory)
    meta = read_json(directory / DATA_META) if (directory / DATA_META).exists() else None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise EsvaError(
            f"not a model folder from `esva train-llm` (no {DATA_META} of format {META_FORMAT})",
            directory,
        )
    model = EmotionLLM.from_pretrained(directory, download=download, dtype=dtype)
    return model.eval(), meta


__all__ = ["DATA_META", "load_trained", "save_trained"]
