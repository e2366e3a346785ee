"""Any corpus as a CSV clip list: ``path,label[,speaker,split,text,audio,name]``.

A thin wrapper over :func:`esva.data.sources.read_clip_csv` (paths relative to the CSV) that
also checks that every media file exists: a row whose file is missing is skipped and reported,
so a stale list does not fail half-way through feature extraction. A ``sex`` column, when
present, is kept in ``extra["sex"]`` for sex-balanced speaker folds.
"""

from __future__ import annotations

from pathlib import Path

from esva.data.datasets.base import Adapter, ClipList, PathLike, Skipped, check_file, finish
from esva.data.sources import read_clip_csv
from esva.tables import read_rows

DEFAULT_CSV = "clips.csv"


def load(root: PathLike, *, check_media: bool = True) -> ClipList:
    """Clips from the CSV ``root`` (or ``root/clips.csv`` when ``root`` is a folder)."""
    path = Path(root).expanduser()
    if path.is_dir():
        path = path / DEFAULT_CSV
    path = check_file(path, "clip list CSV")
    clips = read_clip_csv(path)
    sexes = _column(path, "sex")
    kept, skipped = [], []
    for clip in clips:
        missing = [p for p in clip.media if not p.is_file()] if check_media else []
        if missing:
            skipped.extend(Skipped(p, "media file not found") for p in missing)
            continue
        if sexes.get(clip.name):
            clip.extra["sex"] = sexes[clip.name].lower()
        kept.append(clip)
    return finish(f"generic ({path.name})", kept, skipped)


def _column(path: Path, column: str) -> dict[str, str]:
    """``{clip name: value}`` of an optional column, names resolved as read_clip_csv does."""
    header, rows = read_rows(path, what="clip list", allow_empty=True)
    if column not in header:
        return {}
    out = {}
    for row in rows:
        name = (row.get("name") or "").strip() or Path((row.get("path") or "").strip()).stem
        out[name] = (row.get(column) or "").strip()
    return out


ADAPTER = Adapter(
    name="generic",
    load=load,
    classes=(),
    description="a CSV clip list: path,label[,speaker,split,text,audio,name,sex]",
)
