"""Each expert's classes mapped, explicitly, to the fused output space (ser7).

The fusion's output classes are ser7 (:data:`esva.labelsets.SER7_CLASSES`: neutral, happy,
sad, angry, fearful, disgust, surprised), the space the cross-corpus voice model is trained in.
An expert's distribution over its own classes becomes one over ser7 by summing the
probabilities of the classes that map to the same ser7 class and dropping (then renormalising
over the rest) the classes that have none (:func:`to_target`).

Tables (:func:`target_table` picks one from the expert's class list, so the mapping needs no
setting and is the identity when an expert already speaks ser7):

* a class list inside ser7: identity (a ser7-trained voice model);
* RAVDESS's eight: :data:`esva.data.label_mapping.SER7_MAPS` ``["ravdess"]`` (calm -> neutral);
  likewise any other corpus table there whose labels are exactly the expert's;
* FER+'s eight (the face expert): :data:`FERPLUS_SER7`. Contempt has no ser7 class: it is
  dropped and the other seven renormalised (a contempt face then reads as whichever of the
  seven the net put next; contempt is not merged into disgust, since FER+ annotators keep the
  two apart and the face expert's confusions between them are few). The raw 8-class
  distribution, contempt included, stays in the output (``per_modality.face.raw``).

A ser7 class that an expert's table never reaches (an expert trained without "surprised",
say) gets "no opinion" from that expert: the geometric mean of its probabilities of the
classes it does cover, so that in the log-linear pool it neither favours nor vetoes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from esva.data.label_mapping import DROP, SER7_MAPS
from esva.errors import EsvaError
from esva.labelsets import SER7_CLASSES

# FER+'s eight classes (esva.encoders.face_expert.CLASSES) -> ser7.
FERPLUS_SER7: dict[str, str | None] = {
    "neutral": "neutral",
    "happiness": "happy",
    "surprise": "surprised",
    "sadness": "sad",
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fearful",
    "contempt": DROP,  # no ser7 class: dropped, the rest renormalised (module doc)
}

EXPERT_TABLES: dict[str, dict[str, str | None]] = {**SER7_MAPS, "ferplus": FERPLUS_SER7}


def target_table(
    classes: Sequence[str], target: Sequence[str] = SER7_CLASSES
) -> dict[str, str | None]:
    """The explicit table from an expert's ``classes`` to ``target`` (see the module doc)."""
    classes = list(classes)
    if len(set(classes)) != len(classes):
        raise EsvaError(f"an expert's classes repeat: {classes}")
    if set(classes) <= set(target):
        return {c: c for c in classes}
    for table in EXPERT_TABLES.values():
        if set(table) == set(classes) and all(v is DROP or v in target for v in table.values()):
            return dict(table)
    raise EsvaError(
        f"no table maps the classes {classes} to {list(target)}: train the expert in that "
        "space or add a table to esva.fusion.label_spaces.EXPERT_TABLES"
    )


def to_target(
    probs: np.ndarray,
    classes: Sequence[str],
    table: Mapping[str, str | None] | None = None,
    target: Sequence[str] = SER7_CLASSES,
) -> np.ndarray:
    """Distributions ``(..., len(classes))`` -> ``(..., len(target))`` through ``table``."""
    table = target_table(classes, target) if table is None else table
    p = np.asarray(probs, np.float64)
    if p.shape[-1] != len(classes):
        raise EsvaError(f"{p.shape[-1]} probabilities for {len(classes)} classes")
    index = {c: i for i, c in enumerate(target)}
    out = np.zeros((*p.shape[:-1], len(target)), np.float64)
    covered = np.zeros(len(target), bool)
    for k, c in enumerate(classes):
        if c not in table:
            raise EsvaError(f"class {c!r} is not in the expert's table")
        dest = table[c]
        if dest is DROP:
            continue
        out[..., index[dest]] += p[..., k]
        covered[index[dest]] = True
    if not covered.any():
        raise EsvaError(f"none of the classes {list(classes)} maps to {list(target)}")
    total = out.sum(axis=-1, keepdims=True)
    out = np.where(total > 0, out / np.where(total > 0, total, 1.0), covered / covered.sum())
    if not covered.all():
        logs = np.log(np.clip(out[..., covered], 1e-12, 1.0))
        out[..., ~covered] = np.exp(logs.mean(axis=-1, keepdims=True))
        out /= out.sum(axis=-1, keepdims=True)
    return out


__all__ = ["EXPERT_TABLES", "FERPLUS_SER7", "target_table", "to_target"]
