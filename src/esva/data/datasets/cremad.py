"""CREMA-D (Cao et al. 2014): actor, sentence, emotion and level from the file name.

A file name such as ``1001_DFA_ANG_XX.wav`` reads: actor ``1001`` (1001-1091), sentence code
``DFA`` (one of twelve fixed sentences), emotion ``ANG`` (ANG anger, DIS disgust, FEA fear, HAP
happy, NEU neutral, SAD sad) and level ``XX`` (LO low, MD medium, HI high, XX unspecified).
The corpus ships the same clip as audio (``AudioWAV/*.wav``, ``AudioMP3/*.mp3``) and as video
with its own sound track (``VideoFlash/*.flv``).

One clip per name: the video when there is one and ``video`` is among ``modalities`` (its sound
track is in sync by construction; pairing it with the separate wav would assume a sync nobody
has verified), else the audio file, lossless formats first. The other files of the same clip
are not clips of their own and are not reported as skipped. Actor sex comes from the corpus's
``VideoDemographics.csv`` when it is found under a root.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from esva.data.datasets.base import (
    AUDIO_SUFFIXES,
    MEDIA_SUFFIXES,
    Adapter,
    ClipList,
    PathLike,
    as_roots,
    check_codes,
    finish,
    name_fields,
    scan_named_files,
)
from esva.data.sources import ClipSource
from esva.errors import EsvaError
from esva.tables import read_rows

EMOTIONS = {
    "ANG": "anger",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
CLASSES: tuple[str, ...] = tuple(EMOTIONS.values())
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
DEMOGRAPHICS = "VideoDemographics.csv"
_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
# Audio formats in order of preference when a clip has several (lossless first).
_AUDIO_RANK = {".wav": 0, ".flac": 1}


def parse_name(stem: str) -> tuple[str, str, str, str]:
    """``1001_DFA_ANG_XX`` -> ``("1001", "DFA", "anger", "unspecified")``."""
    actor, sentence, emotion, level = name_fields(
        _NAME, stem, "not a CREMA-D file name (expected e.g. 1001_DFA_ANG_XX)"
    )
    if not 1001 <= int(actor) <= 1091:
        raise ValueError("CREMA-D file name with an actor outside 1001-1091")
    check_codes(
        "CREMA-D",
        (
            (sentence, SENTENCES, "sentence code"),
            (emotion, EMOTIONS, "emotion code"),
            (level, LEVELS, "level code"),
        ),
    )
    return actor, sentence, EMOTIONS[emotion], LEVELS[level]


def read_demographics(path: Path) -> dict[str, str]:
    """``{actor id: "male" | "female"}`` from ``VideoDemographics.csv`` (ActorID, Sex, ...)."""
    _, rows = read_rows(
        path, ("ActorID", "Sex"), what="demographics CSV", expected="ActorID,Sex,...",
        allow_empty=True,
    )  # fmt: skip
    return {
        row["ActorID"].strip(): row["Sex"].strip().lower() for row in rows if row["ActorID"].strip()
    }


def load(
    root: PathLike | Sequence[PathLike], *, modalities: Sequence[str] = ("video", "audio")
) -> ClipList:
    """CREMA-D clips from the media under one or more roots (searched recursively).

    ``modalities``: ``video`` and/or ``audio`` (see the module doc for how they combine).
    """
    unknown = sorted(set(modalities) - {"video", "audio"})
    if unknown or not modalities:
        raise EsvaError(f"CREMA-D modalities must be among video, audio; got {unknown}")
    sexes: dict[str, str] = {}
    for base in as_roots(root):
        for demographics in sorted(base.rglob(DEMOGRAPHICS)):
            sexes.update(read_demographics(demographics))
    # Every file of a clip (its video, its audio formats) under one name; no duplicates here.
    paths, skipped = scan_named_files(root, _named, suffixes=MEDIA_SUFFIXES)
    files: dict[str, list[Path]] = {}
    for path in paths:
        files.setdefault(path.stem, []).append(path)

    clips = []
    for stem in sorted(files):
        actor, sentence, label, level = parse_name(stem)
        videos = [p for p in files[stem] if p.suffix.lower() not in AUDIO_SUFFIXES]
        audios = sorted(
            (p for p in files[stem] if p.suffix.lower() in AUDIO_SUFFIXES),
            key=lambda p: (_AUDIO_RANK.get(p.suffix.lower(), 9), str(p)),
        )
        video = videos[0] if videos and "video" in modalities else None
        audio = audios[0] if audios and "audio" in modalities and video is None else None
        if video is None and audio is None:
            continue  # only files of an excluded modality
        extra = {"sentence": sentence, "level": level}
        if actor in sexes:
            extra["sex"] = sexes[actor]
        clips.append(
            ClipSource(
                name=stem,
                video=video,
                audio=audio,
                label=label,
                speaker=actor,
                text=SENTENCES[sentence],
                extra=extra,
            )
        )
    return finish("cremad", clips, skipped)


def _named(path: Path) -> Path:
    parse_name(path.stem)  # ValueError: not a CREMA-D name
    return path


ADAPTER = Adapter(
    name="cremad",
    load=load,
    classes=CLASSES,
    description="CREMA-D: actor, sentence, emotion and level from names like 1001_DFA_ANG_XX",
)
