"""TESS, the Toronto Emotional Speech Set (Dupuis & Pichora-Fuller 2010): labels in folder names.

Two female speakers, ``OAF`` (older, 64) and ``YAF`` (younger, 26), say the carrier phrase "Say
the word ___" with 200 target words in seven emotions. The corpus is laid out as folders
``<speaker>_<emotion>/`` (emotion: angry, disgust, fear, happy, neutral, pleasant_surprise, sad)
holding ``<speaker>_<word>_<tag>`` files, where the tag is the emotion, or ``ps`` for
pleasant_surprise.

The folder decides speaker and emotion; the file name must agree with it, so a file moved into
the wrong folder is reported rather than mislabelled. One deviation is accepted because the
corpus itself has it: ``OAF_neutral/OA_bite_neutral`` spells the speaker ``OA``
(:data:`SPEAKER_TYPOS`). Clip names are normalised to ``tess_<speaker>_<word>_<emotion>`` (unique
across corpora, and the same whatever the tag's spelling), speakers are ``tess:OAF`` /
``tess:YAF``.
"""

from __future__ import annotations

import re
from pathlib import Path

from esva.data.datasets.base import corpus_clip, name_fields, named_files_adapter
from esva.data.sources import ClipSource

CORPUS = "tess"
LANGUAGE = "en"
DESCRIPTION = "TESS (English, 2 speakers): <speaker>_<emotion>/<speaker>_<word>_<emotion>"
CLASSES: tuple[str, ...] = (
    "angry",
    "disgust",
    "fear",
    "happy",
    "neutral",
    "pleasant_surprise",
    "sad",
)
# the tag a file name uses for each emotion (its folder's emotion, except pleasant_surprise)
TAGS = {**{c: c for c in CLASSES}, "pleasant_surprise": "ps"}
SPEAKERS = {"OAF": ("female", 64), "YAF": ("female", 26)}
SPEAKER_TYPOS = {"OA": "OAF"}  # misspellings that occur in the distributed corpus
_FOLDER = re.compile(rf"^({'|'.join(SPEAKERS)})_({'|'.join(CLASSES)})$")
_FILE = re.compile(r"^([A-Za-z]+)_([a-z]+)_([a-z_]+)$")


def parse_path(path: Path) -> tuple[str, str, str]:
    """``OAF_fear/OAF_dead_fear.opus`` -> ``("OAF", "dead", "fear")``; ``ValueError`` otherwise."""
    folder = _FOLDER.match(path.parent.name)
    if folder is None:
        raise ValueError(
            "TESS file not in a <speaker>_<emotion> folder (speaker OAF or YAF, emotion one of "
            f"{', '.join(CLASSES)})"
        )
    speaker, emotion = folder.groups()
    tag_speaker, word, tag = name_fields(
        _FILE, path.stem, "not a TESS file name (expected <speaker>_<word>_<emotion>)"
    )
    if SPEAKER_TYPOS.get(tag_speaker, tag_speaker) != speaker:
        raise ValueError(f"TESS file name says speaker {tag_speaker!r}, its folder {speaker!r}")
    if tag != TAGS[emotion]:
        raise ValueError(f"TESS file name says emotion {tag!r}, its folder {emotion!r}")
    return speaker, word, emotion


def _clip(path: Path) -> ClipSource:
    speaker, word, emotion = parse_path(path)
    sex, age = SPEAKERS[speaker]
    name = f"{speaker}_{word}_{emotion}"
    extra = {"word": word, "sex": sex, "age": str(age)}
    text = f"Say the word {word}"
    return corpus_clip(CORPUS, LANGUAGE, path, name, emotion, speaker, extra, text)


# TESS clips from the <speaker>_<emotion>/ folders under the root(s): load(root, *, strict=False)
ADAPTER = named_files_adapter(CORPUS, _clip, CLASSES, DESCRIPTION)
load = ADAPTER.load

__all__ = ["ADAPTER", "CLASSES", "load", "parse_path"]
