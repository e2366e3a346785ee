"""Turn ``esva extract --data ...`` into a list of clips: a CSV, a folder or glob, or a dataset."""

from __future__ import annotations

import glob as globlib
import os
from pathlib import Path

from esva.data.sources import AUDIO_SUFFIXES, VIDEO_SUFFIXES, ClipSource, read_clip_csv
from esva.errors import EsvaError


def clip_id(stem: str) -> str:
    """A file stem as a clip id: bytes that are not UTF-8 (Linux allows any) become %XX."""
    text = os.fsencode(stem).decode("utf-8", "surrogateescape")
    return "".join(f"%{ord(ch) - 0xDC00:02X}" if 0xDC80 <= ord(ch) <= 0xDCFF else ch for ch in text)


def _from_files(paths: list[Path]) -> list[ClipSource]:
    clips, seen = [], {}
    for path in sorted(paths):
        suffix = path.suffix.lower()
        if suffix not in VIDEO_SUFFIXES | AUDIO_SUFFIXES:
            continue
        name = clip_id(path.stem)
        if name in seen:  # same stem in two folders: keep both, disambiguated by the folder
            name = f"{path.parent.name}_{path.stem}"
        seen[name] = path
        is_audio = suffix in AUDIO_SUFFIXES
        clips.append(
            ClipSource(
                name=name, video=None if is_audio else path, audio=path if is_audio else None
            )
        )
    return clips


def resolve_inputs(data: str, root: Path | None = None) -> list[ClipSource]:
    """``data`` is a clip-list CSV, a folder (searched recursively), a glob, or a dataset name."""
    path = Path(data)
    if path.suffix.lower() == ".csv":
        return read_clip_csv(path)
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
        return load_dataset(data, root)
    known = ", ".join(list_adapters()) if list_adapters is not None else "none"
    raise EsvaError(f"{data!r} is not a CSV, a folder, a glob or a known dataset ({known})")
