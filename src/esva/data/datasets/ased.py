"""ASED, the Amharic Speech Emotional Dataset v1 (Retta et al. 2023): labels in folder and name.

65 speakers read Amharic sentences in five emotions, in folders ``01Neutral 02Fearful 03Happy
04Sad 05Angry``. A file name such as ``f2-06-02-02-63`` reads: emotion letter and folder number
(``n1 f2 h3 s4 a5``), sentence ``06``, repetition ``02``, gender ``02`` (01 female, 02 male),
speaker ``63`` (01-65). The letter+number must agree with the folder the file is in.

Two quirks of the distributed corpus are accepted, not "fixed": one file spells its emotion
letter in capitals (``04Sad/S4-04-02-01-29``: letters are read case-insensitively), and the
gender field is not constant per speaker (speakers 09, 15, 21, 23, 25 have files marked both
01 and 02), so gender is kept per file (``extra["sex"]``) and the speaker id is the speaker
number alone, as the corpus documents 65 speakers. Clip names are ``ased_<stem>`` with the
emotion letter in lower case, speakers ``ased:01`` to ``ased:65``.
"""

from __future__ import annotations

import re
from pathlib import Path

from esva.data.datasets.base import corpus_clip, name_fields, named_files_adapter
from esva.data.sources import ClipSource

CORPUS = "ased"
LANGUAGE = "am"
DESCRIPTION = "ASED (Amharic, 65 speakers): emotion folders, names like f2-06-02-02-63"
# folder -> (emotion-code prefix of its files, label)
FOLDERS = {
    "01Neutral": ("n1", "neutral"),
    "02Fearful": ("f2", "fearful"),
    "03Happy": ("h3", "happy"),
    "04Sad": ("s4", "sad"),
    "05Angry": ("a5", "angry"),
}
EMOTIONS = dict(FOLDERS.values())  # "n1" -> "neutral", ...
CLASSES: tuple[str, ...] = tuple(EMOTIONS.values())
GENDERS = {"01": "female", "02": "male"}
N_SPEAKERS = 65
_NAME = re.compile(r"^([A-Za-z]\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def parse_name(stem: str) -> tuple[str, str, str, str, str]:
    """``f2-06-02-02-63`` -> ``("fearful", "06", "02", "male", "63")``.

    Returns (label, sentence, repetition, sex, speaker); ``ValueError`` naming the bad field.
    """
    code, sentence, repetition, gender, speaker = name_fields(
        _NAME, stem, "not an ASED file name (expected xn-yy-aa-gg-bb, e.g. f2-06-02-02-63)"
    )
    code = code.lower()
    if code not in EMOTIONS:
        raise ValueError(f"ASED file name with an unknown emotion code {code!r}")
    if not 1 <= int(sentence) <= 99 or repetition not in ("01", "02", "03"):
        raise ValueError("ASED file name with a bad sentence or repetition number")
    if gender not in GENDERS:
        raise ValueError(f"ASED file name with an unknown gender code {gender!r} (01 or 02)")
    if not 1 <= int(speaker) <= N_SPEAKERS:
        raise ValueError(f"ASED file name with an unknown speaker {speaker!r} (01-65)")
    return EMOTIONS[code], sentence, repetition, GENDERS[gender], speaker


def _check_folder(path: Path, stem: str) -> None:
    folder = path.parent.name
    if folder not in FOLDERS:
        raise ValueError(f"ASED file not in an emotion folder ({', '.join(FOLDERS)})")
    if stem[:2].lower() != FOLDERS[folder][0]:
        raise ValueError(f"ASED file name's emotion {stem[:2]!r} does not match folder {folder!r}")


def _clip(path: Path) -> ClipSource:
    label, sentence, repetition, sex, speaker = parse_name(path.stem)
    _check_folder(path, path.stem)
    name = f"{path.stem[:2].lower()}{path.stem[2:]}"  # S4-... and s4-... are the same take
    extra = {"sentence": sentence, "repetition": repetition, "sex": sex}
    return corpus_clip(CORPUS, LANGUAGE, path, name, label, speaker, extra)


# ASED clips from the five emotion folders under the root(s) (a file that disagrees with its
# folder is skipped): load(root, *, strict=False)
ADAPTER = named_files_adapter(CORPUS, _clip, CLASSES, DESCRIPTION)
load = ADAPTER.load

__all__ = ["ADAPTER", "CLASSES", "load", "parse_name"]
