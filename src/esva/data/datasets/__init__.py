"""Corpus adapters: turn a corpus as distributed into ``ClipSource`` records.

>>> clips = load_dataset("ravdess", ["/data/ravdess_speech", "/data/ravdess_av"])
>>> clips.skipped  # what was left out, and why (also logged as one warning)

Each adapter lives in its own module and is imported only when asked for, so that listing the
adapters costs nothing. ``get_adapter(name).classes`` is the corpus's own label set; the
``esva.data.label_mapping`` layer maps it onto the MER six classes or the cross-corpus speech
space ``ser7``. :func:`esva.data.corpora.load_corpora` loads several corpora into one list.
"""

from __future__ import annotations

import importlib

from esva.data.datasets.base import Adapter, ClipList, PathLike, Skipped
from esva.errors import EsvaError

# name -> (module, attribute holding its Adapter)
_ADAPTERS: dict[str, tuple[str, str]] = {
    "ravdess": ("esva.data.datasets.ravdess", "ADAPTER"),
    "mer2023": ("esva.data.datasets.mer", "MER2023"),
    "mer2024": ("esva.data.datasets.mer", "MER2024"),
    "merr": ("esva.data.datasets.merr", "ADAPTER"),
    "emodb": ("esva.data.datasets.emodb", "ADAPTER"),
    "cremad": ("esva.data.datasets.cremad", "ADAPTER"),
    "tess": ("esva.data.datasets.tess", "ADAPTER"),
    "emovo": ("esva.data.datasets.emovo", "ADAPTER"),
    "ased": ("esva.data.datasets.ased", "ADAPTER"),
    "nemo": ("esva.data.datasets.nemo", "ADAPTER"),
    "meld": ("esva.data.datasets.meld", "ADAPTER"),
    "generic": ("esva.data.datasets.generic", "ADAPTER"),
}
_ALIASES = {"crema-d": "cremad", "crema_d": "cremad", "csv": "generic", "berlin": "emodb"}


def list_adapters() -> list[str]:
    """The registered corpus names."""
    return sorted(_ADAPTERS)


def canonical_name(name: str) -> str:
    """The registered spelling of a corpus name (``"CREMA-D"`` -> ``"cremad"``)."""
    key = name.strip().lower()
    return _ALIASES.get(key, key)


def get_adapter(name: str) -> Adapter:
    """The adapter registered under ``name`` (case-insensitive; a few aliases accepted)."""
    key = canonical_name(name)
    if key not in _ADAPTERS:
        raise EsvaError(f"unknown dataset {name!r} (known: {', '.join(list_adapters())})")
    module, attribute = _ADAPTERS[key]
    return getattr(importlib.import_module(module), attribute)


def load_dataset(name: str, root: PathLike | list[PathLike], **kwargs) -> ClipList:
    """Load corpus ``name`` from ``root`` with the adapter's options (see each module)."""
    return get_adapter(name).load(root, **kwargs)


__all__ = [
    "Adapter",
    "ClipList",
    "Skipped",
    "canonical_name",
    "get_adapter",
    "list_adapters",
    "load_dataset",
]
