"""Turn ``esva extract --data ...`` into a list of clips: a CSV, a folder or glob, or a dataset.

Clip names are file names in the store, so they are made safe, short and unique here, by
construction (:func:`unique_clip_names`): a name longer than 96 bytes or holding a path
separator is cut and suffixed with 8 hex digits of a sha256, and names that would clash
(``random.mp4`` and ``random.wav`` in one folder) all get such a suffix from their media path.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import os
from dataclasses import replace
from pathlib import Path

from esva.data.sources import AUDIO_SUFFIXES, VIDEO_SUFFIXES, ClipSource, read_clip_csv
from esva.errors import EsvaError


def clip_id(stem: str) -> str:
    """A file stem as a clip id: bytes that are not UTF-8 (Linux allows any) become %XX."""
    text = os.fsencode(stem).decode("utf-8", "surrogateescape")
    return "".join(f"%{ord(ch) - 0xDC00:02X}" if 0xDC80 <= ord(ch) <= 0xDCFF else ch for ch in text)


# Clip names become file names (``<encoder>/<name>.safetensors`` and its temporary sibling), so
# they must stay well under the file system's 255-byte limit.
MAX_CLIP_NAME_BYTES = 96


def _short_hash(text: str) -> str:
    return hashlib.sha256(os.fsencode(text)).hexdigest()[:8]


def safe_clip_name(name: str, key: str | None = None) -> str:
    """``name`` as a clip id that is a valid, short file name.

    A name with a path separator, a NUL, or longer than :data:`MAX_CLIP_NAME_BYTES` bytes is cut
    and given ``-`` + 8 hex digits of sha256(``key`` or ``name``), so different long names stay
    different. Names that are already fine are returned unchanged.
    """
    cleaned = "".join("_" if ch in "/\\\x00" else ch for ch in name)
    if cleaned in ("", ".", ".."):
        cleaned = f"clip{cleaned}"
    if cleaned == name and len(name.encode("utf-8", "surrogateescape")) <= MAX_CLIP_NAME_BYTES:
        return name
    head = cleaned.encode("utf-8", "surrogateescape")[: MAX_CLIP_NAME_BYTES - 9]
    return f"{head.decode('utf-8', 'ignore')}-{_short_hash(key or name)}"


def unique_clip_names(sources: list[ClipSource]) -> list[ClipSource]:
    """Make every clip's name a safe file name (:func:`safe_clip_name`) and unique.

    Names that would clash (``random.mp4`` and ``random.wav`` in one folder, or the same stem in
    two folders) all get ``-`` + 8 hex digits of sha256 of their media path, so no clip's name
    depends on which other files happen to be present in the same order.
    """
    safe = [safe_clip_name(s.name, str(s.video or s.audio or s.name)) for s in sources]
    counts: dict[str, int] = {}
    for name in safe:
        counts[name] = counts.get(name, 0) + 1
    out = []
    for source, name in zip(sources, safe, strict=True):
        if counts[name] > 1:
            key = "|".join(str(p) for p in source.media) or source.name
            name = f"{safe_clip_name(name)[: MAX_CLIP_NAME_BYTES - 9]}-{_short_hash(key)}"
        out.append(source if name == source.name else replace(source, name=name))
    return out


def _from_files(paths: list[Path]) -> list[ClipSource]:
    clips = []
    for path in sorted(paths):
        suffix = path.suffix.lower()
        if suffix not in VIDEO_SUFFIXES | AUDIO_SUFFIXES:
            continue
        is_audio = suffix in AUDIO_SUFFIXES
        clips.append(
            ClipSource(
                name=clip_id(path.stem),
                video=None if is_audio else path,
                audio=path if is_audio else None,
            )
        )
    return unique_clip_names(clips)


def resolve_inputs(data: str, root: Path | None = None) -> list[ClipSource]:
    """``data`` is a clip-list CSV, a folder (searched recursively), a glob, or a dataset name."""
    path = Path(data)
    if path.suffix.lower() == ".csv":
        return unique_clip_names(read_clip_csv(path))
    if path.is_dir():
        clips = _from_files([p for p in path.rglob("*") if p.is_file()])
        if not clips:
            raise EsvaError("no audio or video files in the folder", path)
        return clips
    if any(ch in data for ch in "*?["):
        clips = _from_files([Path(p) for p in globlib.glob(data, recursive=True)])
        if not clips:
            raise EsvaError(f"no audio or video files match {data!r}")
        return clips
    try:
        from esva.data.datasets import list_adapters, load_dataset
    except ImportError:  # pragma: no cover - the adapters ship with the package
        list_adapters = None
    if list_adapters is not None and data in list_adapters():
        if root is None:
            raise EsvaError(f"dataset {data!r} needs --root (the corpus folder)")
        return unique_clip_names(load_dataset(data, root))
    known = ", ".join(list_adapters()) if list_adapters is not None else "none"
    raise EsvaError(f"{data!r} is not a CSV, a folder, a glob or a known dataset ({known})")
