"""What a dataset adapter yields and ``esva extract`` consumes: one record per clip.

A clip may have one media file (a video with its audio track) or two (a silent video and a
separate audio file, as RAVDESS's 02-/03- twins or StyleTalk's mp4+wav pairs), plus the label,
speaker, split and transcript the corpus provides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esva.errors import EsvaError
from esva.tables import read_rows


@dataclass
class ClipSource:
    name: str  # unique clip id, used as the feature file name
    video: Path | None = None  # a video file (its audio track is used when ``audio`` is None)
    audio: Path | None = None  # a separate audio file
    label: str | None = None
    valence: float | None = None
    speaker: str | None = None
    split: str | None = None
    text: str | None = None  # transcript, when the corpus has one
    # Seconds to add to the audio file's clock to put it on the video's (e.g. RAVDESS's export
    # offset between a 03- audio file and its 02- video twin).
    audio_offset_s: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)
    # In-memory media (the Python API's arrays, esva.media.arrays), read instead of decoding a
    # file: an esva.media.types.AudioClip (16 kHz mono) and esva.media.types.VideoFrames.
    audio_clip: Any = None
    frames: Any = None

    @property
    def in_memory(self) -> bool:
        """True when the clip's media are arrays, not files."""
        return self.audio_clip is not None or self.frames is not None

    @property
    def media(self) -> list[Path]:
        return [p for p in (self.video, self.audio) if p is not None]


AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aac"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv"}
MEDIA_SUFFIXES = AUDIO_SUFFIXES | VIDEO_SUFFIXES  # what a folder of clips is searched for


def read_clip_csv(path: str | Path) -> list[ClipSource]:
    """A generic clip list: ``path,label[,speaker,split,text]`` (paths relative to the CSV).

    ``path`` may be a video or an audio file; optional ``audio`` and ``name`` columns give a
    separate audio track and an explicit clip id (default: the file's stem).
    """
    path = Path(path)
    _, rows = read_rows(
        path, ("path",), what="clip list", expected="path[,label,speaker,split,text,audio,name]"
    )
    clips, seen = [], set()
    for line, row in enumerate(rows, start=2):
        raw = (row.get("path") or "").strip()
        if not raw:
            raise EsvaError(f"line {line}: empty path", path)
        media = (path.parent / raw) if not Path(raw).is_absolute() else Path(raw)
        audio = (row.get("audio") or "").strip()
        name = (row.get("name") or "").strip() or media.stem
        if name in seen:
            raise EsvaError(
                f"line {line}: duplicate clip name {name!r} (add a 'name' column)", path
            )
        seen.add(name)
        is_audio = media.suffix.lower() in AUDIO_SUFFIXES
        clips.append(
            ClipSource(
                name=name,
                video=None if is_audio else media,
                audio=media if is_audio else ((path.parent / audio) if audio else None),
                label=(row.get("label") or row.get("discrete") or "").strip() or None,
                speaker=(row.get("speaker") or "").strip() or None,
                split=(row.get("split") or "").strip() or None,
                text=(row.get("text") or "").strip() or None,
            )
        )
    return clips
