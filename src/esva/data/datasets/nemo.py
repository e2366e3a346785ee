"""nEMO (Christop, LREC-COLING 2024): Polish emotional speech, labels in file names.

Nine actors (4 female, 5 male) read sentences in six emotions. A file is named
``<speaker>_<emotion>_<n>`` (``EB0_anger_13``): speaker id, emotion word (anger, fear, happiness,
neutral, sadness, surprised) and a running number. The corpus's ``data.tsv`` (tab-separated:
file_id, emotion, raw_text, normalized_text, speaker_id, gender, age) adds each clip's transcript
and the speaker's gender; when it sits beside the audio, its label must agree with the file
name (a disagreement is a skipped clip with the reason, never a silent relabel). Clip names are
``nemo_<stem>``, speakers ``nemo:EB0`` etc. Licence CC BY-NC-SA 4.0.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from esva.data.datasets.base import (
    Adapter,
    ClipList,
    PathLike,
    as_roots,
    corpus_clip,
    load_named_files,
    name_fields,
)
from esva.data.sources import ClipSource
from esva.tables import read_rows

CORPUS = "nemo"
LANGUAGE = "pl"
CLASSES: tuple[str, ...] = ("anger", "fear", "happiness", "neutral", "sadness", "surprised")
_NAME = re.compile(r"^([A-Z]{2}\d)_([a-z]+)_(\d+)$")


def parse_name(stem: str) -> tuple[str, str]:
    """``EB0_anger_13`` -> ``("anger", "EB0")``; ``ValueError`` naming the bad field."""
    speaker, label, _ = name_fields(
        _NAME, stem, "not an nEMO file name (expected <speaker>_<emotion>_<n>)"
    )
    if label not in CLASSES:
        raise ValueError(f"nEMO file name with an unknown emotion {label!r}")
    return label, speaker


def read_metadata(root: Path) -> dict[str, dict[str, str]]:
    """``data.tsv`` under ``root`` (or its parent) as ``{stem: row}``; empty when absent."""
    for folder in (root, root.parent):
        path = folder / "data.tsv"
        if path.is_file():
            _, rows = read_rows(
                path,
                ("file_id",),
                what="nEMO data.tsv",
                allow_empty=True,
                delimiter="\t",
                quoting=csv.QUOTE_NONE,  # transcripts hold quote marks of their own
            )
            return {Path(r["file_id"]).stem: r for r in rows if r["file_id"]}
    return {}


def load(root: PathLike | Sequence[PathLike], *, strict: bool = False) -> ClipList:
    """nEMO clips from the audio files under ``root`` (the corpus folder or its ``samples/``).

    A file whose name does not parse, or whose ``data.tsv`` label disagrees with its name, is
    skipped with the reason; ``strict=True`` raises a one-line :class:`EsvaError` instead.
    """
    metadata: dict[str, dict[str, str]] = {}
    for base in as_roots(root):
        metadata.update(read_metadata(base))

    def make_clip(path: Path) -> ClipSource:
        label, speaker = parse_name(path.stem)
        row = metadata.get(path.stem, {})
        if row and row.get("emotion", label).strip() != label:
            raise ValueError(f"nEMO data.tsv says {row['emotion']!r} but the name says {label!r}")
        extra = {"sex": row["gender"].strip()} if row.get("gender") else {}
        text = (row.get("raw_text") or "").strip() or None
        return corpus_clip(CORPUS, LANGUAGE, path, path.stem, label, speaker, extra, text=text)

    return load_named_files(CORPUS, root, make_clip, strict=strict)


ADAPTER = Adapter(
    name=CORPUS,
    load=load,
    classes=CLASSES,
    description="nEMO (Polish, 9 actors): emotion and actor from names like EB0_anger_13; "
    "transcripts from data.tsv",
)

__all__ = ["ADAPTER", "CLASSES", "load", "parse_name", "read_metadata"]
