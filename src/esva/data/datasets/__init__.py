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

# name -> (module in this package, attribute holding its Adapter). A corpus's module has its
# name and holds its ADAPTER (mer.py holds two): corpora labelled in their file names, then
# corpora read from a label table.
_NAMED = ("ravdess", "emodb", "cremad", "tess", "emovo", "ased", "nemo")
_TABLES = ("merr", "meld", "generic")
_ADAPTERS: dict[str, tuple[str, str]] = {
    **{name: (name, "ADAPTER") for name in _NAMED + _TABLES},
    "mer2023": ("mer", "MER2023"),
    "mer2024": ("mer", "MER2024"),
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
    return getattr(importlib.import_module(f"{__name__}.{module}"), attribute)


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
