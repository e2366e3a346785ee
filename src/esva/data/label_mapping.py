"""Declared tables from corpus labels to a target label space (mer6, ser7), with explicit drops.

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

**ser7: the cross-corpus speech-emotion space.** For a speech model trained across acted
corpora and languages (RAVDESS, TESS, EMOVO, ASED, and EmoDB, CREMA-D, MELD) the target
``"ser7"`` keeps seven classes, :data:`SER7` = neutral, happy, sad, angry, fearful, disgust,
surprised (RAVDESS's words; unlike mer6 it keeps disgust, which five of these corpora have).
:data:`SER7_MAPS` lists every corpus label's class:

=========  ======================================================================================
corpus     corpus label -> ser7 (identical words omitted)
=========  ======================================================================================
ravdess    calm -> neutral (see below)
tess       fear -> fearful; pleasant_surprise -> surprised (see below)
emovo      joy -> happy, anger -> angry, sadness -> sad, fear -> fearful, surprise -> surprised
ased       all five identical (neutral, fearful, happy, sad, angry)
nemo       anger -> angry, fear -> fearful, happiness -> happy, sadness -> sad
emodb      anger -> angry, fear -> fearful, happiness -> happy, sadness -> sad; boredom dropped
cremad     anger -> angry, fear -> fearful
meld       joy -> happy, anger -> angry, sadness -> sad, fear -> fearful, surprise -> surprised
=========  ======================================================================================

Two explicit choices. *RAVDESS calm -> neutral*: calm is a low-arousal delivery with no
counterpart in any other corpus here; as a class of its own it could only be learnt from
RAVDESS (and would teach "RAVDESS speaker" as much as "calm"), and dropping it loses 2/15 of
RAVDESS; its nearest category in every corpus is the unemotional reading, and merging calm
with neutral is the common choice in RAVDESS work (also our mer6 choice). *TESS
pleasant_surprise -> surprised*: TESS has no other surprise, and ser7's surprised does not fix
valence (RAVDESS surprised and EMOVO sorpresa are unspecified); TESS's is positive only, a bias
to keep in mind when scoring surprised on TESS alone. A corpus that lacks a class (ASED has no
disgust or surprised, TESS no calm) simply supplies no clips of it: every table maps onto a
subset of :data:`SER7`, and :func:`classes_for` still returns all seven.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterable, Mapping

from esva.data.datasets import canonical_name, get_adapter
from esva.data.sources import ClipSource
from esva.errors import EsvaError
from esva.labelsets import MER2023_CLASSES, SER7_CLASSES

log = logging.getLogger(__name__)

MER6: tuple[str, ...] = MER2023_CLASSES
SER7: tuple[str, ...] = SER7_CLASSES
DROP = None  # a table value meaning "no target class: leave the clip out (and count it)"
TARGETS = ("mer6", "ser7", "identity")

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
    "tess": {
        "angry": "angry",
        "disgust": DROP,
        "fear": "worried",
        "happy": "happy",
        "neutral": "neutral",
        "pleasant_surprise": "surprise",
        "sad": "sad",
    },
    "emovo": {
        "disgust": DROP,
        "joy": "happy",
        "neutral": "neutral",
        "fear": "worried",
        "anger": "angry",
        "surprise": "surprise",
        "sadness": "sad",
    },
    "ased": {
        "neutral": "neutral",
        "fearful": "worried",
        "happy": "happy",
        "sad": "sad",
        "angry": "angry",
    },
    "nemo": {
        "anger": "angry",
        "fear": "worried",
        "happiness": "happy",
        "neutral": "neutral",
        "sadness": "sad",
        "surprised": "surprise",
    },
}

# The cross-corpus speech space (module doc, "ser7"): every label of each corpus, no implicit
# entries.
SER7_MAPS: dict[str, dict[str, str | None]] = {
    "ravdess": {
        "neutral": "neutral",
        "calm": "neutral",  # no counterpart elsewhere; the unemotional reading (module doc)
        "happy": "happy",
        "sad": "sad",
        "angry": "angry",
        "fearful": "fearful",
        "disgust": "disgust",
        "surprised": "surprised",
    },
    "tess": {
        "angry": "angry",
        "disgust": "disgust",
        "fear": "fearful",
        "happy": "happy",
        "neutral": "neutral",
        "pleasant_surprise": "surprised",  # TESS's only surprise (positive valence only)
        "sad": "sad",
    },
    "emovo": {
        "disgust": "disgust",
        "joy": "happy",
        "neutral": "neutral",
        "fear": "fearful",
        "anger": "angry",
        "surprise": "surprised",
        "sadness": "sad",
    },
    "ased": {
        "neutral": "neutral",
        "fearful": "fearful",
        "happy": "happy",
        "sad": "sad",
        "angry": "angry",
    },
    "nemo": {
        "anger": "angry",
        "fear": "fearful",
        "happiness": "happy",
        "neutral": "neutral",
        "sadness": "sad",
        "surprised": "surprised",
    },
    "emodb": {
        "anger": "angry",
        "boredom": DROP,  # low arousal without sadness: no ser7 class (as for mer6)
        "disgust": "disgust",
        "fear": "fearful",
        "happiness": "happy",
        "sadness": "sad",
        "neutral": "neutral",
    },
    "cremad": {
        "anger": "angry",
        "disgust": "disgust",
        "fear": "fearful",
        "happy": "happy",
        "neutral": "neutral",
        "sad": "sad",
    },
    "meld": {
        "neutral": "neutral",
        "joy": "happy",
        "surprise": "surprised",
        "anger": "angry",
        "sadness": "sad",
        "disgust": "disgust",
        "fear": "fearful",
    },
}

# target -> (its classes, its tables, how an error names the classes)
_TARGET_TABLES: dict[str, tuple[tuple[str, ...], dict[str, dict[str, str | None]], str]] = {
    "mer6": (MER6, LABEL_MAPS, "MER classes"),
    "ser7": (SER7, SER7_MAPS, "ser7 classes"),
}


def classes_for(source_corpus: str, target: str = "mer6") -> tuple[str, ...]:
    """The class list a model trained on ``source_corpus`` mapped to ``target`` predicts."""
    if target in _TARGET_TABLES:
        return _TARGET_TABLES[target][0]
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

    ``target="mer6"`` maps through ``table`` (default: ``LABEL_MAPS[source_corpus]``),
    ``target="ser7"`` likewise (default: ``SER7_MAPS[source_corpus]``);
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
    else:
        classes, tables, what = _TARGET_TABLES[target]
        if table is None:
            if source_corpus not in tables:
                raise EsvaError(
                    f"no label table from {source_corpus!r} to {target} (tables: "
                    f"{', '.join(sorted(tables))}); pass table={{label: class or None}}"
                )
            table = tables[source_corpus]
        bad = sorted({v for v in table.values() if v is not DROP and v not in classes})
        if bad:
            raise EsvaError(f"label table maps to {bad}, which are not {what} {list(classes)}")

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
