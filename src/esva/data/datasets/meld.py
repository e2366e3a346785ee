"""MELD (Poria et al. 2019): utterances from *Friends* in the official train/dev/test CSVs.

The split is the file: ``train_sent_emo.csv``, ``dev_sent_emo.csv``, ``test_sent_emo.csv``, each
with the columns ``Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID`` (plus
``Sr No., Season, Episode, StartTime, EndTime``). A row's video is
``dia{Dialogue_ID}_utt{Utterance_ID}.mp4`` in its split's folder of the MELD.Raw release
(``train_splits/``, ``dev_splits_complete/``, ``output_repeated_splits_test/``).

Dialogue and utterance ids restart in every split (``dia0_utt0`` exists three times), so a
clip's name is ``{split}_dia{D}_utt{U}``. The dev split is called ``val`` in
``ClipSource.split`` (esva's name for the early-stopping split); ``extra["meld_split"]`` keeps
MELD's own name.

The media are optional: without ``media_root`` every clip is text-only (``video`` is None),
which is what the text benchmark needs. With ``media_root``, a row whose video is missing is
skipped and reported, not kept without media.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from esva.data.datasets.base import (
    Adapter,
    ClipList,
    PathLike,
    Skipped,
    attach_videos,
    check_dir,
    finish,
)
from esva.data.sources import ClipSource
from esva.errors import EsvaError
from esva.tables import check_columns, read_rows

CLASSES: tuple[str, ...] = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
SPLITS = ("train", "dev", "test")
CSV_NAMES = {split: f"{split}_sent_emo.csv" for split in SPLITS}
# esva's split names (train / val / test) for MELD's.
ESVA_SPLIT = {"train": "train", "dev": "val", "test": "test"}
# Video folders of each split in the MELD.Raw release, then plain fallbacks.
MEDIA_DIRS = {
    "train": ("train_splits", "train"),
    "dev": ("dev_splits_complete", "dev_splits", "dev"),
    "test": ("output_repeated_splits_test", "test_splits", "test"),
}
REQUIRED = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")
OPTIONAL = ("Sentiment", "Season", "Episode", "StartTime", "EndTime")


def read_split(path: Path, split: str) -> list[ClipSource]:
    """The rows of one MELD CSV as text-only clips; any bad row is a one-line EsvaError."""
    columns, rows = read_rows(path, what="MELD CSV", allow_empty=True)  # header names stripped
    check_columns(columns, REQUIRED, path, "MELD")
    if not rows:
        raise EsvaError("MELD CSV has a header but no rows", path)

    clips, seen = [], set()
    for line, row in enumerate(rows, start=2):
        label = (row["Emotion"] or "").strip().lower()
        if label not in CLASSES:
            raise EsvaError(
                f"line {line}: unknown emotion {row['Emotion']!r} "
                f"(MELD's are {', '.join(CLASSES)})",
                path,
            )
        try:
            dialogue, utterance = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
        except (TypeError, ValueError):
            raise EsvaError(
                f"line {line}: Dialogue_ID/Utterance_ID {row['Dialogue_ID']!r}/"
                f"{row['Utterance_ID']!r} are not integers",
                path,
            ) from None
        stem = f"dia{dialogue}_utt{utterance}"
        if stem in seen:
            raise EsvaError(f"line {line}: duplicate utterance {stem}", path)
        seen.add(stem)
        extra = {"meld_split": split, "media_stem": stem, "dialogue": str(dialogue)}
        extra.update({c.lower(): row[c].strip() for c in OPTIONAL if row.get(c) is not None})
        clips.append(
            ClipSource(
                name=f"{split}_{stem}",
                label=label,
                speaker=(row["Speaker"] or "").strip() or None,
                split=ESVA_SPLIT[split],
                text=(row["Utterance"] or "").strip() or None,
                extra=extra,
            )
        )
    return clips


def load(
    root: PathLike,
    *,
    splits: Sequence[str] = SPLITS,
    media_root: PathLike | None = None,
) -> ClipList:
    """MELD clips from ``root/{train,dev,test}_sent_emo.csv``; videos from ``media_root``.

    ``splits``: which of ``train``, ``dev``, ``test`` to read (each CSV must exist).
    ``media_root``: the MELD.Raw folder holding the split folders (see the module doc), or None
    for text-only clips.
    """
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown or not splits:
        raise EsvaError(f"MELD splits must be among train, dev, test; got {unknown}")
    base = check_dir(root)
    media = check_dir(media_root) if media_root is not None else None
    clips: list[ClipSource] = []
    skipped: list[Skipped] = []
    for split in SPLITS:
        if split not in splits:
            continue
        rows = read_split(base / CSV_NAMES[split], split)
        if media is None:
            clips.extend(rows)
            continue
        folder = next((media / d for d in MEDIA_DIRS[split] if (media / d).is_dir()), None)
        if folder is None:
            raise EsvaError(
                f"no {split} video folder (looked for {', '.join(MEDIA_DIRS[split])})", media
            )
        found, missing = attach_videos("MELD", rows, folder, lambda clip: clip.extra["media_stem"])
        clips.extend(found)
        skipped.extend(missing)
    return finish("meld", clips, skipped)


ADAPTER = Adapter(
    name="meld",
    load=load,
    classes=CLASSES,
    description="MELD: official train/dev/test CSVs, text-only unless media_root is given",
)
