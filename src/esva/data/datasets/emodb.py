"""EmoDB, the Berlin Database of Emotional Speech (Burkhardt et al. 2005): labels in file names.

A file name such as ``03a01Wa.wav`` reads: speaker ``03``, text ``a01``, emotion letter ``W``
(the German initial: W Wut = anger, L Langeweile = boredom, E Ekel = disgust, A Angst = fear,
F Freude = happiness, T Trauer = sadness, N neutral), version ``a`` (takes of the same
sentence). Ten actors (five female, five male) speak ten German sentences; the corpus is audio
only (16 kHz wav in ``wav/``). The speaker and text tables below are the corpus's documentation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from esva.data.datasets.base import (
    AUDIO_SUFFIXES,
    Adapter,
    ClipList,
    PathLike,
    Skipped,
    as_roots,
    finish,
    scan_media,
)
from esva.data.sources import ClipSource

EMOTIONS = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
CLASSES: tuple[str, ...] = tuple(EMOTIONS.values())
# speaker code -> (sex, age at recording)
SPEAKERS = {
    "03": ("male", 31),
    "08": ("female", 34),
    "09": ("female", 21),
    "10": ("male", 32),
    "11": ("male", 26),
    "12": ("male", 30),
    "13": ("female", 32),
    "14": ("female", 35),
    "15": ("male", 25),
    "16": ("female", 31),
}
TEXTS = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
_NAME = re.compile(r"^(\d\d)([ab]\d\d)([A-Z])([a-z])$")


def parse_name(stem: str) -> tuple[str, str, str, str]:
    """``03a01Wa`` -> ``("03", "a01", "anger", "a")``; ``ValueError`` naming the bad field."""
    match = _NAME.match(stem)
    if match is None:
        raise ValueError("not an EmoDB file name (expected e.g. 03a01Wa)")
    speaker, text, letter, version = match.groups()
    if speaker not in SPEAKERS:
        raise ValueError("EmoDB file name with an unknown speaker code")
    if text not in TEXTS:
        raise ValueError("EmoDB file name with an unknown text code")
    if letter not in EMOTIONS:
        raise ValueError("EmoDB file name with an unknown emotion letter")
    return speaker, text, EMOTIONS[letter], version


def load(root: PathLike | Sequence[PathLike]) -> ClipList:
    """EmoDB clips from the audio files under ``root`` (e.g. the corpus's ``wav/`` folder)."""
    clips: list[ClipSource] = []
    skipped: list[Skipped] = []
    seen: dict[str, ClipSource] = {}
    for base in as_roots(root):
        for path in scan_media(base, AUDIO_SUFFIXES):
            try:
                speaker, text, label, version = parse_name(path.stem)
            except ValueError as exc:
                skipped.append(Skipped(path, str(exc)))
                continue
            if path.stem in seen:
                skipped.append(Skipped(path, f"duplicate of {seen[path.stem].audio}"))
                continue
            sex, age = SPEAKERS[speaker]
            clip = ClipSource(
                name=path.stem,
                audio=path,
                label=label,
                speaker=speaker,
                text=TEXTS[text],
                extra={"text_code": text, "version": version, "sex": sex, "age": str(age)},
            )
            seen[path.stem] = clip
            clips.append(clip)
    return finish("emodb", clips, skipped)


ADAPTER = Adapter(
    name="emodb",
    load=load,
    classes=CLASSES,
    description="EmoDB (Berlin): speaker, text and emotion letter from names like 03a01Wa.wav",
)
