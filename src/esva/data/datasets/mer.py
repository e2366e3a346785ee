"""MER2023 / MER2024 (Lian et al.): a label CSV beside a folder of videos.

The labels are MERTools' ``name,discrete,valence`` table (MER2024 ships it as
``label-disdim.csv``; ``discrete`` is one of the six MER classes, ``valence`` a float, either
may be empty for unlabelled clips). The videos are ``<video_root>/<name>.mp4`` (some MER2023
clips are ``.avi``). MER2024's ``label-transcription.csv`` (``name,chinese,english``) gives the
transcript. The corpora have no speaker ids: use their official splits, not speaker folds.

``root`` is the label CSV itself or the corpus folder; in a folder the adapter looks for
``label-disdim.csv``, the videos in ``video-labeled/`` (MER2024's name), ``video/`` or the folder
itself, and the transcripts in ``label-transcription.csv``. Each can be given explicitly.
"""

from __future__ import annotations

from pathlib import Path

from esva.data.datasets.base import (
    Adapter,
    ClipList,
    PathLike,
    attach_videos,
    check_file,
    finish,
    video_folder,
)
from esva.data.sources import ClipSource
from esva.errors import EsvaError
from esva.labelsets import MER2023_CLASSES
from esva.tables import parse_number, read_table

CLASSES = MER2023_CLASSES
LABEL_CSV = "label-disdim.csv"
TRANSCRIPT_CSV = "label-transcription.csv"
VIDEO_DIRS = ("video-labeled", "video")


def read_labels(path: Path) -> dict[str, tuple[str | None, float | None]]:
    """``{name: (class or None, valence or None)}`` from ``name,discrete[,valence]``."""
    rows = read_table(path, ("name", "discrete"))
    out: dict[str, tuple[str | None, float | None]] = {}
    unknown = set()
    for name, row in rows.items():
        label = row["discrete"].strip().lower() or None
        if label is not None and label not in CLASSES:
            unknown.add(label)
        text = (row.get("valence") or "").strip()
        valence = parse_number(text, f"{name}: valence", path) if text else None
        out[name.strip()] = (label, valence)
    if unknown:
        raise EsvaError(
            f"unknown class names {sorted(unknown)} (MER's are {', '.join(CLASSES)})", path
        )
    return out


def read_transcripts(path: Path, language: str) -> dict[str, str]:
    """``{name: text}`` from the ``language`` column of a ``name,...`` transcript CSV."""
    rows = read_table(path, ("name", language))
    return {name.strip(): row[language].strip() for name, row in rows.items()}


def load(
    root: PathLike,
    *,
    video_root: PathLike | None = None,
    transcripts: PathLike | None = None,
    language: str = "english",
    media: bool = True,
    split: str | None = None,
    corpus: str = "mer",
) -> ClipList:
    """MER clips: one per row of the label CSV, with its video (see the module doc).

    ``media=False`` gives label/text-only clips without looking for videos; with ``media``, a
    name whose video is missing is skipped and reported. ``split`` is stored on every clip
    (the label files are per split: train, test1, ...).
    """
    root = Path(root).expanduser()
    if root.is_dir():
        labels_path = check_file(root / LABEL_CSV, f"MER label CSV ({LABEL_CSV})")
        folder = root
    else:
        labels_path = check_file(root, "MER label CSV")
        folder = root.parent
    labels = read_labels(labels_path)

    texts: dict[str, str] = {}
    if transcripts is None and (folder / TRANSCRIPT_CSV).is_file():
        transcripts = folder / TRANSCRIPT_CSV
    if transcripts is not None:
        texts = read_transcripts(check_file(transcripts, "transcript CSV"), language)

    clips = [
        ClipSource(
            name=name, label=label, valence=valence, split=split, text=texts.get(name) or None
        )
        for name, (label, valence) in labels.items()
    ]
    if not media:
        return finish(corpus, clips, [])
    clips, skipped = attach_videos("MER", clips, video_folder(folder, video_root, VIDEO_DIRS))
    return finish(corpus, clips, skipped)


def load_mer2023(root: PathLike, **kwargs) -> ClipList:
    return load(root, corpus="mer2023", **kwargs)


def load_mer2024(root: PathLike, **kwargs) -> ClipList:
    return load(root, corpus="mer2024", **kwargs)


MER2023 = Adapter(
    name="mer2023",
    load=load_mer2023,
    classes=CLASSES,
    description="MER2023: name,discrete,valence label CSV + <video_root>/<name>.mp4|avi",
)
MER2024 = Adapter(
    name="mer2024",
    load=load_mer2024,
    classes=CLASSES,
    description="MER2024: label-disdim.csv + video-labeled/ (+ label-transcription.csv)",
)
