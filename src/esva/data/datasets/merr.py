"""MERR (Emotion-LLaMA, Cheng et al. 2024): emotion captions keyed by clip name; read and write.

MERR annotates MER2023 clips (``<video_root>/<name>.mp4`` or ``.avi``) in two JSON files, each an
object keyed by clip name (Emotion-LLaMA's ``FeatureFaceDataset``):

* ``MERR_coarse_grained.json``: ``{name: {"caption": "...", ...}}``, the coarse description
  (visual and audio cues and the subtitle put together by a template);
* ``MERR_fine_grained.json``: ``{name: {"smp_reason_caption": "...", ...}}``, the LLaMA-3
  reasoning about the emotion.

Entries may hold more fields (AU lists, peak frame, ``reason_caption``); they are kept by
:func:`read_merr_json` / :func:`write_merr_json`. The labels are in the annotation lists beside
them (``MERR_coarse_grained.txt``, ``MERR_fine_grained.txt``): one clip per line, either
``name label`` or the legacy ``name frames label [valence]``, the label one of nine classes.
The transcripts are ``transcription_en_all.csv`` (``name,sentence``).

Clips carry the two captions in ``extra["caption"]`` and ``extra["smp_reason_caption"]``.
:func:`merr_entries_from_clips` turns clips back into JSON entries (merging into the entries
read earlier, so that their other fields survive) and :func:`write_merr_labels` writes the
annotation list: read, edit, write round-trips.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from esva.data.datasets.base import (
    Adapter,
    ClipList,
    PathLike,
    attach_videos,
    check_dir,
    check_file,
    finish,
    video_folder,
)
from esva.data.sources import ClipSource
from esva.errors import EsvaError
from esva.io import atomic_write
from esva.labelsets import MERR_CLASSES
from esva.tables import read_table

CLASSES = MERR_CLASSES  # Emotion-LLaMA's nine labels
COARSE_JSON = "MERR_coarse_grained.json"
FINE_JSON = "MERR_fine_grained.json"
COARSE_LIST = "MERR_coarse_grained.txt"
FINE_LIST = "MERR_fine_grained.txt"
TRANSCRIPT_CSV = "transcription_en_all.csv"
# The caption field of each granularity, and the ClipSource.extra key it is kept under.
CAPTION_FIELD = {"coarse": "caption", "fine": "smp_reason_caption"}


# ------------------------------------------------------------------------------- JSON files
def read_merr_json(path: PathLike) -> dict[str, dict[str, Any]]:
    """A MERR caption file as ``{name: entry}``, in file order; the structure is checked."""
    path = check_file(path, "MERR JSON")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise EsvaError("MERR JSON is not UTF-8 text", path) from None
    except json.JSONDecodeError as exc:
        raise EsvaError(f"not valid JSON ({exc})", path) from None
    if not isinstance(data, dict):
        raise EsvaError("MERR JSON must be an object keyed by clip name", path)
    for name, entry in data.items():
        if not isinstance(entry, dict):
            raise EsvaError(f"entry {name!r} is not an object", path)
        for field in CAPTION_FIELD.values():
            if field in entry and not isinstance(entry[field], str):
                raise EsvaError(f"entry {name!r}: {field} is not a string", path)
    return data


def write_merr_json(path: PathLike, entries: Mapping[str, Mapping[str, Any]]) -> None:
    """Write ``{name: entry}`` as MERR JSON (UTF-8, not ASCII-escaped), atomically."""
    with atomic_write(path) as handle:
        json.dump(entries, handle, indent=4, ensure_ascii=False)
        handle.write("\n")


def merr_entries_from_clips(
    clips: Iterable[ClipSource],
    granularity: str = "fine",
    base: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """JSON entries for ``clips`` at ``granularity`` (``coarse`` / ``fine``).

    Each clip's caption (``extra["caption"]`` or ``extra["smp_reason_caption"]``) replaces the
    field in the clip's ``base`` entry, whose other fields are kept. Clips without that caption
    are left out: MERR has no entry for a clip it did not describe.
    """
    if granularity not in CAPTION_FIELD:
        raise ValueError(f"granularity must be 'coarse' or 'fine', got {granularity!r}")
    field = CAPTION_FIELD[granularity]
    base = base or {}
    entries: dict[str, dict[str, Any]] = {}
    for clip in clips:
        caption = clip.extra.get(field)
        if caption is None:
            continue
        entries[clip.name] = {**base.get(clip.name, {}), field: caption}
    return entries


# ------------------------------------------------------------------------ annotation lists
def read_merr_labels(path: PathLike) -> dict[str, str]:
    """``{name: label}`` from a MERR list (``name label`` or ``name frames label ...``)."""
    path = check_file(path, "MERR annotation list")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise EsvaError("MERR annotation list is not UTF-8 text", path) from None
    labels: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise EsvaError(f"line {number}: expected 'name label' or 'name frames label'", path)
        name, label = fields[0], (fields[1] if len(fields) == 2 else fields[2]).lower()
        if label not in CLASSES:
            raise EsvaError(
                f"line {number}: unknown label {label!r} (MERR's are {', '.join(CLASSES)})", path
            )
        if name in labels:
            raise EsvaError(f"line {number}: duplicate clip {name!r}", path)
        labels[name] = label
    if not labels:
        raise EsvaError("MERR annotation list has no entries", path)
    return labels


def write_merr_labels(path: PathLike, clips: Iterable[ClipSource]) -> None:
    """Write the compact ``name label`` annotation list of the labelled ``clips``, atomically."""
    with atomic_write(path) as handle:
        for clip in clips:
            if clip.label is not None:
                handle.write(f"{clip.name} {clip.label}\n")


# --------------------------------------------------------------------------------- adapter
def load(
    root: PathLike,
    *,
    coarse: PathLike | None = None,
    fine: PathLike | None = None,
    labels: PathLike | None = None,
    transcripts: PathLike | None = None,
    video_root: PathLike | None = None,
    media: bool = True,
) -> ClipList:
    """MERR clips from the folder ``root`` (or the files given explicitly).

    Defaults inside ``root``: ``MERR_coarse_grained.json`` / ``MERR_fine_grained.json`` (at least
    one must exist), the labels from ``MERR_fine_grained.txt`` or else ``MERR_coarse_grained.txt``
    (optional), ``transcription_en_all.csv`` (optional) and the videos in ``video/`` or ``root``.
    The clips are the annotation list's names when there is one (the dataset's definition), else
    every name in the JSON files. ``media=False`` skips the video look-up (captions and labels
    only); otherwise a clip without a video is skipped and reported.
    """
    folder = check_dir(root)
    coarse = coarse if coarse is not None else _default(folder / COARSE_JSON)
    fine = fine if fine is not None else _default(folder / FINE_JSON)
    if coarse is None and fine is None:
        raise EsvaError(f"no MERR JSON ({COARSE_JSON} or {FINE_JSON}) in the folder", folder)
    captions = {
        "caption": read_merr_json(coarse) if coarse is not None else {},
        "smp_reason_caption": read_merr_json(fine) if fine is not None else {},
    }
    if labels is None:
        labels = _default(folder / FINE_LIST) or _default(folder / COARSE_LIST)
    label_of = read_merr_labels(labels) if labels is not None else {}
    if transcripts is None:
        transcripts = _default(folder / TRANSCRIPT_CSV)
    texts = {}
    if transcripts is not None:
        rows = read_table(check_file(transcripts, "transcript CSV"), ("name", "sentence"))
        texts = {name: row["sentence"].strip() for name, row in rows.items()}

    if label_of:
        names = list(label_of)
    else:  # coarse names first, then fine-only names, each in file order
        names = list(dict.fromkeys([*captions["caption"], *captions["smp_reason_caption"]]))

    clips = [
        ClipSource(
            name=name,
            label=label_of.get(name),
            text=texts.get(name) or None,
            extra={
                field: entries[name][field]
                for field, entries in captions.items()
                if field in entries.get(name, {})
            },
        )
        for name in names
    ]
    if not media:
        return finish("merr", clips, [])
    clips, skipped = attach_videos("MERR", clips, video_folder(folder, video_root, ("video",)))
    return finish("merr", clips, skipped)


def _default(path: Path) -> Path | None:
    return path if path.is_file() else None


ADAPTER = Adapter(
    name="merr",
    load=load,
    classes=CLASSES,
    description="MERR (Emotion-LLaMA): coarse/fine caption JSON + label lists + MER2023 videos",
)
