"""EMOVO (Costantini et al., LREC 2014): Italian emotional speech, labels in file names.

Six actors (``f1 f2 f3`` female, ``m1 m2 m3`` male) read 14 sentences in seven emotions. A file
name such as ``dis-f1-b1`` reads: emotion code ``dis``, actor ``f1``, sentence ``b1``. The
emotion codes are Italian initials: dis (disgusto, disgust), gio (gioia, joy), neu (neutro,
neutral), pau (paura, fear), rab (rabbia, anger), sor (sorpresa, surprise), tri (tristezza,
sadness); the adapter's labels are the English words (``extra["code"]`` keeps the code).
Sentence codes: ``b1-b3`` short, ``l1-l4`` long, ``n1-n5`` nonsense, ``d1-d2`` questions
(``extra["sentence_type"]``). The corpus ships one folder per actor; a file in an actor's folder
must name that actor. Clip names are ``emovo_<stem>``, speakers ``emovo:f1`` etc.
"""

from __future__ import annotations

import re
from pathlib import Path

from esva.data.datasets.base import corpus_clip, name_fields, named_files_adapter
from esva.data.sources import ClipSource

CORPUS = "emovo"
LANGUAGE = "it"
DESCRIPTION = "EMOVO (Italian, 6 actors): emotion, actor, sentence from names like dis-f1-b1"
EMOTIONS = {
    "dis": "disgust",
    "gio": "joy",
    "neu": "neutral",
    "pau": "fear",
    "rab": "anger",
    "sor": "surprise",
    "tri": "sadness",
}
CLASSES: tuple[str, ...] = tuple(EMOTIONS.values())
SPEAKERS = {"f1": "female", "f2": "female", "f3": "female", "m1": "male", "m2": "male",
            "m3": "male"}  # fmt: skip
SENTENCE_TYPES = {"b": "short", "l": "long", "n": "nonsense", "d": "question"}
SENTENCES = ("b1", "b2", "b3", "l1", "l2", "l3", "l4", "n1", "n2", "n3", "n4", "n5", "d1", "d2")
_NAME = re.compile(r"^([a-z]{3})-([a-z]\d)-([a-z]\d)$")


def parse_name(stem: str) -> tuple[str, str, str]:
    """``dis-f1-b1`` -> ``("disgust", "f1", "b1")``; ``ValueError`` naming the bad field."""
    code, speaker, sentence = name_fields(
        _NAME, stem, "not an EMOVO file name (expected <emotion>-<actor>-<sentence>)"
    )
    if code not in EMOTIONS:
        raise ValueError(f"EMOVO file name with an unknown emotion code {code!r}")
    if speaker not in SPEAKERS:
        raise ValueError(f"EMOVO file name with an unknown actor {speaker!r}")
    if sentence not in SENTENCES:
        raise ValueError(f"EMOVO file name with an unknown sentence {sentence!r}")
    return EMOTIONS[code], speaker, sentence


def _clip(path: Path) -> ClipSource:
    label, speaker, sentence = parse_name(path.stem)
    folder = path.parent.name
    if folder in SPEAKERS and folder != speaker:
        raise ValueError(f"EMOVO file of actor {speaker!r} in folder {folder!r}")
    extra = {
        "code": path.stem.split("-")[0],
        "sentence": sentence,
        "sentence_type": SENTENCE_TYPES[sentence[0]],
        "sex": SPEAKERS[speaker],
    }
    return corpus_clip(CORPUS, LANGUAGE, path, path.stem, label, speaker, extra)


# EMOVO clips from the audio files under the root(s), one folder per actor or flat (a file in
# another actor's folder is skipped): load(root, *, strict=False)
ADAPTER = named_files_adapter(CORPUS, _clip, CLASSES, DESCRIPTION)
load = ADAPTER.load

__all__ = ["ADAPTER", "CLASSES", "load", "parse_name"]
