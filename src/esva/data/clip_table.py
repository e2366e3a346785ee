"""The clip table of a feature dataset: ``labels.csv`` in MERTools' format plus optional columns.

Required: ``name``; ``discrete`` (the emotion; may be empty for unlabelled clips). Optional:
``valence`` (float), ``speaker`` (for speaker-independent splits), ``split`` (train/val/test).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from esva.errors import EsvaError
from esva.tables import parse_number, read_rows

OPTIONAL_COLUMNS = ("valence", "speaker", "split")


@dataclass
class ClipLabel:
    name: str
    label: str | None
    valence: float | None = None
    speaker: str | None = None
    split: str | None = None


def read_clip_table(path: str | Path, classes: list[str] | None = None) -> list[ClipLabel]:
    """Read and validate ``labels.csv``; unknown classes and duplicate names are errors."""
    path = Path(path)
    _, rows = read_rows(
        path,
        ("name", "discrete"),
        what="labels file",
        expected=f"name,discrete[,{','.join(OPTIONAL_COLUMNS)}]",
    )
    clips, seen, unknown = [], set(), set()
    for line, row in enumerate(rows, start=2):
        name = (row.get("name") or "").strip()
        if not name:
            raise EsvaError(f"line {line}: empty name", path)
        if name in seen:
            raise EsvaError(f"line {line}: duplicate name {name!r}", path)
        seen.add(name)
        label = (row.get("discrete") or "").strip() or None
        if label is not None and classes is not None and label not in classes:
            unknown.add(label)
        raw = (row.get("valence") or "").strip()
        valence = parse_number(raw, f"line {line}: valence", path) if raw else None
        clips.append(
            ClipLabel(
                name,
                label,
                valence,
                (row.get("speaker") or "").strip() or None,
                (row.get("split") or "").strip() or None,
            )
        )
    if unknown:
        raise EsvaError(
            f"unknown class names {sorted(unknown)} (the model's classes are {classes})", path
        )
    return clips
