"""RAVDESS (Livingstone & Russo 2018): labels from the 7-field file name, 02-/03- twins paired.

Every RAVDESS file is named ``MM-VV-EE-II-SS-RR-AA``:

======== ================================================================================
field    values
======== ================================================================================
MM       modality: 01 full audio-video, 02 video-only, 03 audio-only
VV       vocal channel: 01 speech, 02 song
EE       emotion: 01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust,
         08 surprised (song has no disgust / surprised)
II       intensity: 01 normal, 02 strong (neutral has only normal)
SS       statement: 01 "Kids are talking by the door", 02 "Dogs are sitting by the door"
RR       repetition: 01, 02
AA       actor: 01..24, odd = male, even = female
======== ================================================================================

The three modality files of one *take* (the same VV-EE-II-SS-RR-AA) are exports of one
recording. The adapter turns them into clips like this:

* a full-AV ``01-`` file is a clip of its own (the video with its own, in-sync audio track);
* a video-only ``02-`` file is paired with its audio-only ``03-`` twin into one clip
  (``video`` = the 02- file, ``audio`` = the 03- file, ``audio_offset_s`` = the export offset);
* a ``03-`` file without a video twin is an audio-only clip;
* a ``02-`` file without a ``03-`` twin is a silent, video-only clip.

With ``one_per_take`` (the default) only one clip per take is kept, in the order full-AV,
paired, video-only, audio-only, so that no recording is counted twice in training or scoring;
the others are listed in ``ClipList.skipped`` ("same take as ...").

**Export offset.** In the corpus the audio-only ``03-`` file starts 1600 samples at 48 kHz
(33.3 ms) *later* in the recording than the full-AV file's AAC track. Measured on all 7 takes
of Actor_01 that have both (``/work/shared/data``; audio decoded with ``esva.media.load_audio`` at
48 kHz and cross-correlated): sample ``n`` of the 03- file matches sample ``n + 1600`` of the
full-AV track on every take (normalised correlation 0.996-0.999), and the 02- video has the
same frame timestamps as the 01- video (frame differences are smallest at zero shift). So a time
``t`` on the 03- file's clock is ``t + 0.0333`` s on the video's clock: in ClipSource's convention
("seconds to add to the audio file's clock to put it on the video's") the offset is
``+1600 / 48000`` s, :data:`EXPORT_OFFSET_S`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from esva.data.datasets.base import (
    AUDIO_SUFFIXES,
    MEDIA_SUFFIXES,
    Adapter,
    ClipList,
    PathLike,
    Skipped,
    check_codes,
    finish,
    name_fields,
    scan_named_files,
)
from esva.data.sources import ClipSource
from esva.errors import EsvaError
from esva.labelsets import RAVDESS_CLASSES

CLASSES = RAVDESS_CLASSES  # code order 01..08
MODALITIES = {"01": "av", "02": "video", "03": "audio"}
CHANNELS = {"01": "speech", "02": "song"}
EMOTIONS = {f"{i:02d}": name for i, name in enumerate(CLASSES, start=1)}
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
SONG_EMOTIONS = {"01", "02", "03", "04", "05", "06"}  # the song recordings have no 07 / 08
N_ACTORS = 24
ACTORS = {f"{i:02d}" for i in range(1, N_ACTORS + 1)}
# 03- audio starts this much later in the recording than the 01- AAC track (see module doc).
EXPORT_OFFSET_S = 1600 / 48_000

_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
# Which clip kinds a take yields, in the order ``one_per_take`` prefers them.
KIND_ORDER = ("av", "video+audio", "video", "audio")


@dataclass(frozen=True)
class RavdessName:
    """The decoded fields of one RAVDESS file name (codes kept as the two-digit strings)."""

    modality: str
    channel: str
    emotion: str
    intensity: str
    statement: str
    repetition: str
    actor: str

    @property
    def take(self) -> str:
        """The name without the modality: the same for the 01-/02-/03- exports of a take."""
        return "-".join(
            (
                self.channel,
                self.emotion,
                self.intensity,
                self.statement,
                self.repetition,
                self.actor,
            )
        )

    @property
    def speaker(self) -> str:
        return f"Actor_{self.actor}"

    @property
    def sex(self) -> str:
        return "male" if int(self.actor) % 2 else "female"

    @property
    def label(self) -> str:
        return EMOTIONS[self.emotion]


def parse_name(stem: str) -> RavdessName:
    """Decode ``MM-VV-EE-II-SS-RR-AA``; raise ``ValueError`` saying which field is wrong."""
    name = RavdessName(
        *name_fields(_NAME, stem, "not a RAVDESS file name (expected MM-VV-EE-II-SS-RR-AA)")
    )
    check_codes(
        "RAVDESS",
        (
            (name.modality, MODALITIES, "modality code"),
            (name.channel, CHANNELS, "vocal channel code"),
            (name.emotion, EMOTIONS, "emotion code"),
            (name.intensity, INTENSITIES, "intensity code"),
            (name.statement, STATEMENTS, "statement code"),
            (name.repetition, ("01", "02"), "repetition code"),
            (name.actor, ACTORS, "actor code"),
        ),
    )
    if name.emotion == "01" and name.intensity == "02":
        raise ValueError("RAVDESS file name with strong neutral (neutral has only normal)")
    if name.channel == "02" and name.emotion not in SONG_EMOTIONS:
        raise ValueError("RAVDESS song file with disgust/surprised (song has neither)")
    return name


def load(
    root: PathLike | Sequence[PathLike],
    *,
    modalities: Sequence[str] = ("av", "video", "audio"),
    channels: Sequence[str] = ("speech", "song"),
    one_per_take: bool = True,
    audio_offset_s: float = EXPORT_OFFSET_S,
) -> ClipList:
    """RAVDESS clips from one or more roots, searched recursively (``Actor_NN/`` folders).

    ``modalities``: which file kinds to use, any of ``av`` (01-), ``video`` (02-), ``audio``
    (03-). ``channels``: ``speech`` and/or ``song``. ``one_per_take``: keep one clip per
    recording (see the module doc). ``audio_offset_s``: the offset given to paired 02-/03-
    clips (default: the corpus's measured export offset).
    """
    unknown = sorted(set(modalities) - set(MODALITIES.values()))
    if unknown or not modalities:
        raise EsvaError(f"RAVDESS modalities must be among av, video, audio; got {unknown}")
    unknown = sorted(set(channels) - set(CHANNELS.values()))
    if unknown or not channels:
        raise EsvaError(f"RAVDESS channels must be among speech, song; got {unknown}")

    def parse(path: Path) -> tuple[RavdessName, Path] | None:
        parsed = parse_name(path.stem)
        is_audio = path.suffix.lower() in AUDIO_SUFFIXES
        if (parsed.modality == "03") != is_audio:
            expected = "an audio" if parsed.modality == "03" else "a video"
            raise ValueError(f"RAVDESS {parsed.modality}- file is not {expected} file")
        if (
            MODALITIES[parsed.modality] not in modalities
            or CHANNELS[parsed.channel] not in channels
        ):
            return None  # excluded by the caller's options, not a problem with the file
        return parsed, path

    # One file per take and modality: the first found wins, a second is a duplicate.
    files, skipped = scan_named_files(
        root, parse, key=lambda file: (file[0].take, file[0].modality), suffixes=MEDIA_SUFFIXES
    )
    # take -> modality code -> (parsed name, path)
    takes: dict[str, dict[str, tuple[RavdessName, Path]]] = {}
    for parsed, path in files:
        takes.setdefault(parsed.take, {})[parsed.modality] = (parsed, path)

    clips: list[ClipSource] = []
    for take in sorted(takes):
        candidates = _take_clips(takes[take], audio_offset_s)
        if one_per_take:
            candidates.sort(key=lambda clip: KIND_ORDER.index(clip.extra["modality"]))
            kept, dropped = candidates[:1], candidates[1:]
            for clip in dropped:
                skipped.extend(
                    Skipped(
                        path, f"same take as the {kept[0].extra['modality']} clip (one_per_take)"
                    )
                    for path in clip.media
                )
            candidates = kept
        clips.extend(candidates)
    return finish("ravdess", clips, skipped)


def _take_clips(
    files: dict[str, tuple[RavdessName, Path]], audio_offset_s: float
) -> list[ClipSource]:
    """The clips one take yields from the files found for it (see the module doc)."""
    clips = []
    av, video, audio = files.get("01"), files.get("02"), files.get("03")
    if av is not None:
        clips.append(_clip(av[0], "av", video=av[1]))
    if video is not None and audio is not None:
        clips.append(
            _clip(video[0], "video+audio", video=video[1], audio=audio[1], offset=audio_offset_s)
        )
    elif video is not None:
        clips.append(_clip(video[0], "video", video=video[1]))
    elif audio is not None:
        clips.append(_clip(audio[0], "audio", audio=audio[1]))
    return clips


def _clip(
    name: RavdessName,
    kind: str,
    video: Path | None = None,
    audio: Path | None = None,
    offset: float = 0.0,
) -> ClipSource:
    stem = (video or audio).stem  # the 01-/02- video's name, or the 03- file's for audio-only
    return ClipSource(
        name=stem,
        video=video,
        audio=audio,
        label=name.label,
        speaker=name.speaker,
        text=STATEMENTS[name.statement],
        audio_offset_s=offset,
        extra={
            "modality": kind,
            "take": name.take,
            "channel": CHANNELS[name.channel],
            "intensity": INTENSITIES[name.intensity],
            "statement": name.statement,
            "repetition": name.repetition,
            "sex": name.sex,
        },
    )


ADAPTER = Adapter(
    name="ravdess",
    load=load,
    classes=CLASSES,
    description="RAVDESS speech/song: labels from MM-VV-EE-II-SS-RR-AA, 02-/03- twins paired",
)

__all__ = [
    "ADAPTER",
    "CLASSES",
    "EXPORT_OFFSET_S",
    "STATEMENTS",
    "RavdessName",
    "load",
    "parse_name",
]
