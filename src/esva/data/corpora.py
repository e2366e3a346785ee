"""Several corpora as one clip list, for cross-corpus and cross-language training.

Above both the adapters (:mod:`esva.data.datasets`) and the label tables
(:mod:`esva.data.label_mapping`, which reads the adapters' class lists), so that neither
imports the other back.

>>> clips = load_corpora({"ravdess": "data/ravdess_speech", "tess": "data/ser_corpora/tess",
...                       "emovo": "data/ser_corpora/emovo", "ased": "data/ser_corpora/ased"},
...                      target="ser7")

Every clip of the result carries ``extra["corpus"]`` (the registered corpus name) and a speaker
id prefixed by its corpus (``tess:OAF``, ``ravdess:Actor_01``), so that speaker-balanced and
corpus-balanced sampling, and folds by speaker, never merge two corpora's speakers. The adapters
of TESS, EMOVO and ASED already name their speakers this way; for the older adapters (RAVDESS's
``Actor_01``, EmoDB's ``03``, ...) the prefix is added here, so a corpus loaded alone keeps the
speaker ids it always had. Clip names must be unique across the corpora (the new adapters prefix
theirs with the corpus; RAVDESS, EmoDB and CREMA-D names cannot collide by their formats): a
collision is a one-line error, never a silently overwritten feature file.

``target`` (``"ser7"``, ``"mer6"`` or ``"identity"``) relabels each corpus with its declared
table (:mod:`esva.data.label_mapping`); the corpus's own word stays in
``extra["source_label"]``, and clips whose label has no target class are dropped and counted in
:attr:`ClipList.skipped`. Without ``target`` the labels are each corpus's own words.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from esva.data.datasets import canonical_name, load_dataset
from esva.data.datasets.base import ClipList, PathLike, Skipped
from esva.data.label_mapping import map_labels
from esva.data.sources import ClipSource
from esva.errors import EsvaError


def corpus_speaker(corpus: str, speaker: str | None) -> str | None:
    """``speaker`` prefixed by ``corpus:`` unless it already is (None stays None)."""
    if speaker is None or speaker.startswith(f"{corpus}:"):
        return speaker
    return f"{corpus}:{speaker}"


def load_corpora(
    roots: Mapping[str, PathLike | Sequence[PathLike]], target: str | None = None
) -> ClipList:
    """Load every ``{corpus name: root(s)}`` and concatenate them (see the module doc)."""
    if not roots:
        raise EsvaError("load_corpora needs at least one corpus: {name: root}")
    clips: list[ClipSource] = []
    skipped: list[Skipped] = []
    owner: dict[str, str] = {}  # clip name -> corpus that has it
    for given, root in roots.items():
        corpus = canonical_name(given)
        loaded = load_dataset(corpus, root)
        skipped.extend(loaded.skipped)
        part: list[ClipSource] = [
            dataclasses.replace(
                clip,
                speaker=corpus_speaker(corpus, clip.speaker),
                extra={**clip.extra, "corpus": corpus},
            )
            for clip in loaded
        ]
        if target is not None:
            before = {clip.name: clip for clip in part}
            part, _ = map_labels(part, corpus, target=target)
            kept = {clip.name for clip in part}
            skipped.extend(
                Skipped(
                    clip.media[0] if clip.media else Path(clip.name),
                    f"{corpus} label {clip.label!r} has no {target} class",
                )
                for name, clip in before.items()
                if name not in kept
            )
        for clip in part:
            if clip.name in owner:
                raise EsvaError(
                    f"clip name {clip.name!r} occurs in both {owner[clip.name]} and {corpus}; "
                    "clip names must be unique across corpora"
                )
            owner[clip.name] = corpus
        clips.extend(part)
    return ClipList(clips, skipped)


__all__ = ["corpus_speaker", "load_corpora"]
