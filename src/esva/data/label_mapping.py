"""One declared table from each corpus's labels to the MER six classes, with explicit drops.

The model's classes are MER2023's six (neutral, angry, happy, sad, worried, surprise). Other
corpora label other sets; :data:`LABEL_MAPS` says, for every label of every registered corpus,
which MER class it becomes or that it is dropped (:data:`DROP`). Nothing is left implicit: a label
missing from a table is an error, and :func:`map_labels` returns (and logs) how many clips of each
label it dropped.

How the entries were decided. MER's "worried" is the fear family: in the emotion wheels that
MERTools ships for MER2025's open-vocabulary track (``wheel_mapping.npz``, five wheels) "worried"
and "fearful"/"fear" share the top-level category in every wheel that has both (wheel1 *scared*,
wheel2 *fearful*, wheel4 *fear*), so fear/fearful -> worried. Disgust is a top-level category of
its own in those wheels (wheel1 *disgusted*, wheel2 *disgusted*, wheel4 *disgust*), with no MER
six counterpart: dropped (Emotion-LLaMA likewise left disgust out of MERR, having found only two
samples). Surprise is its own top-level category in wheels 1 and 2 -> surprise. The rest are
judgement calls, noted entry by entry. Pass ``table=`` to :func:`map_labels` to use another
mapping.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterable, Mapping

from esva.data.datasets import canonical_name, get_adapter
from esva.data.sources import ClipSource
from esva.errors import EsvaError
from esva.labelsets import MER2023_CLASSES

log = logging.getLogger(__name__)

MER6: tuple[str, ...] = MER2023_CLASSES
DROP = None  # a table value meaning "no MER class: leave the clip out (and count it)"
TARGETS = ("mer6", "identity")

LabelTable = Mapping[str, str | None]

_MER_IDENTITY: dict[str, str | None] = {c: c for c in MER6}

LABEL_MAPS: dict[str, dict[str, str | None]] = {
    "ravdess": {
        "neutral": "neutral",
        # Calm has no MER class. The MER wheels file it under joy/peaceful (wheel4: calm ->
        # joy), but RAVDESS calm is a low-arousal, barely expressive delivery, nothing like MER's
        # expressed "happy"; merging it with neutral is the common choice in RAVDESS work.
        "calm": "neutral",
        "happy": "happy",
        "sad": "sad",
        "angry": "angry",
        "fearful": "worried",
        "disgust": DROP,
        "surprised": "surprise",
    },
    "emodb": {
        "anger": "angry",
        # Boredom: the wheels disagree (wheels 3-5: sad; wheel2: "bad", a category of its own);
        # EmoDB boredom is low arousal without sadness. Dropped rather than forced into sad.
        "boredom": DROP,
        "disgust": DROP,
        "fear": "worried",
        "happiness": "happy",
        "sadness": "sad",
        "neutral": "neutral",
    },
    "cremad": {
        "anger": "angry",
        "disgust": DROP,
        "fear": "worried",
        "happy": "happy",
        "neutral": "neutral",
        "sad": "sad",
    },
    "meld": {
        "neutral": "neutral",
        "joy": "happy",
        "surprise": "surprise",
        "anger": "angry",
        "sadness": "sad",
        "disgust": DROP,
        "fear": "worried",
    },
    "merr": {
        **_MER_IDENTITY,
        # Emotion-LLaMA keeps fear apart from worried in MERR; in MER's six they are one class.
        "fear": "worried",
        # Contempt is not in the wheels; it is usually grouped with disgust (also dropped).
        "contempt": DROP,
        # Doubt is a cognitive state, not one of the six emotions (the wheels' nearest word,
        # "skeptical", sits under anger, which would mislabel puzzled faces as angry).
        "doubt": DROP,
    },
    "mer2023": dict(_MER_IDENTITY),
    "mer2024": dict(_MER_IDENTITY),
}


def classes_for(source_corpus: str, target: str = "mer6") -> tuple[str, ...]:
    """The class list a model trained on ``source_corpus`` mapped to ``target`` predicts."""
    if target == "mer6":
        return MER6
    if target == "identity":
        classes = get_adapter(source_corpus).classes
        if not classes:
            raise EsvaError(f"dataset {source_corpus!r} has no fixed class list for 'identity'")
        return classes
    raise EsvaError(f"unknown label target {target!r} (known: {', '.join(TARGETS)})")


def map_labels(
    clips: Iterable[ClipSource],
    source_corpus: str,
    target: str = "mer6",
    table: LabelTable | None = None,
) -> tuple[list[ClipSource], dict[str, int]]:
    """Relabel ``clips`` for ``target``; return ``(kept, {source label: clips dropped})``.

    ``target="mer6"`` maps through ``table`` (default: ``LABEL_MAPS[source_corpus]``);
    ``target="identity"`` keeps the corpus's own classes and only checks them. The kept clips
    are copies: the new label in ``label``, the corpus's in ``extra["source_label"]``.
    Unlabelled clips (``label`` None) are kept unlabelled. A label the table does not list is
    a one-line :class:`EsvaError` naming the clip's file; drops are logged with their counts.
    """
    source_corpus = canonical_name(source_corpus)
    if target not in TARGETS:
        raise EsvaError(f"unknown label target {target!r} (known: {', '.join(TARGETS)})")
    if target == "identity":
        table = {c: c for c in classes_for(source_corpus, "identity")}
    elif table is None:
        if source_corpus not in LABEL_MAPS:
            raise EsvaError(
                f"no label table from {source_corpus!r} to mer6 (tables: "
                f"{', '.join(sorted(LABEL_MAPS))}); pass table={{label: class or None}}"
            )
        table = LABEL_MAPS[source_corpus]
    bad = sorted({v for v in table.values() if v is not DROP and v not in MER6})
    if target == "mer6" and bad:
        raise EsvaError(f"label table maps to {bad}, which are not MER classes {list(MER6)}")

    kept: list[ClipSource] = []
    dropped: Counter[str] = Counter()
    for clip in clips:
        if clip.label is None:
            kept.append(dataclasses.replace(clip, extra=dict(clip.extra)))
            continue
        if clip.label not in table:
            where = clip.media[0] if clip.media else None
            raise EsvaError(
                f"clip {clip.name}: label {clip.label!r} is not in the {source_corpus} table "
                f"(known: {', '.join(table)})",
                where,
            )
        new = table[clip.label]
        if new is DROP:
            dropped[clip.label] += 1
            continue
        kept.append(
            dataclasses.replace(clip, label=new, extra={**clip.extra, "source_label": clip.label})
        )
    if dropped:
        log.warning(
            "%s -> %s: dropped %d clips with no target class (%s)",
            source_corpus,
            target,
            sum(dropped.values()),
            ", ".join(f"{label}: {n}" for label, n in dropped.most_common()),
        )
    return kept, dict(dropped)
