"""Every sha256 esva records, computed one way: files, folders, lists of files, weights in memory.

A feature file, a model folder and an encoder record all name their inputs by these digests, so
two runs (or two processes of one DDP run) can be compared bit for bit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_FILE_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (read in blocks: any size)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def cached_file_sha256(path: str | Path) -> str:
    """:func:`file_sha256`, remembered per (path, size, mtime): large weights are hashed once."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_CACHE:
        _FILE_CACHE[key] = file_sha256(path)
    return _FILE_CACHE[key]


def digest_lines(lines: Iterable[str]) -> str:
    """Hex sha256 of ``"line\\n"`` lines joined in the given order (a hash of hashes)."""
    return hashlib.sha256("".join(f"{line}\n" for line in lines).encode("utf-8")).hexdigest()


def files_sha256(files: Iterable[str | Path]) -> str:
    """One digest for several files: of their ``"name sha256"`` lines; one file's own digest."""
    files = [Path(f) for f in files]
    if len(files) == 1:
        return cached_file_sha256(files[0])
    return digest_lines(f"{f.name} {cached_file_sha256(f)}" for f in files)


def tree_sha256(path: str | Path) -> str:
    """Hex sha256 of a directory: of its sorted ``"relpath sha256"`` lines.

    ``relpath`` is each regular file's path relative to ``path`` with ``/`` separators, so the
    hash depends on the names and contents only (not on timestamps or the order on disk).
    """
    root = Path(path)
    return digest_lines(
        sorted(
            f"{p.relative_to(root).as_posix()} {file_sha256(p)}"
            for p in root.rglob("*")
            if p.is_file()
        )
    )


def content_sha256(path: str | Path) -> str:
    """:func:`tree_sha256` for a directory, :func:`file_sha256` for a file."""
    return tree_sha256(path) if Path(path).is_dir() else file_sha256(path)


def state_dict_sha256(state: Mapping[str, Any]) -> str:
    """Hex sha256 of a torch state dict (names and raw bytes, any dtype, bfloat16 included)."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        # raw bytes, not numpy values: numpy has no bfloat16
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
