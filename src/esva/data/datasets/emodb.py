"""EmoDB, the Berlin Database of Emotional Speech (Burkhardt et al. 2005): labels in file names.

A file name such as ``03a01Wa.wav`` reads: speaker ``03``, text ``a01``, emotion letter ``W``
(the German initial: W Wut = anger, L Langeweile = boredom, E Ekel = disgust, A Angst = fear,
F Freude = happiness, T Trauer = sadness, N neutral), version ``a`` (takes of the same
sentence). Ten actors (five female, five male) speak ten German sentences; the corpus is audio
only (16 kHz wav in ``wav/``). The speaker and text tables below are the corpus's documentation.
"""

from __future__ import annotations

import re
from pathlib import Path

from esva.data.datasets.base import check_codes, name_fields, named_files_adapter
from esva.data.sources import ClipSource

DESCRIPTION = "EmoDB (Berlin): speaker, text and emotion letter from names like 03a01Wa.wav"
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
    speaker, text, letter, version = name_fields(
        _NAME, stem, "not an EmoDB file name (expected e.g. 03a01Wa)"
    )
    check_codes(
        "EmoDB",
        (
            (speaker, SPEAKERS, "speaker code"),
            (text, TEXTS, "text code"),
            (letter, EMOTIONS, "emotion letter"),
        ),
    )
    return speaker, text, EMOTIONS[letter], version


def _clip(path: Path) -> ClipSource:
    speaker, text, label, version = parse_name(path.stem)
    sex, age = SPEAKERS[speaker]
    return ClipSource(
        name=path.stem,
        audio=path,
        label=label,
        speaker=speaker,
        text=TEXTS[text],
        extra={"text_code": text, "version": version, "sex": sex, "age": str(age)},
    )


# EmoDB clips from the audio files under the root(s), e.g. the corpus's wav/ folder:
# load(root, *, strict=False)
ADAPTER = named_files_adapter("emodb", _clip, CLASSES, DESCRIPTION)
load = ADAPTER.load
