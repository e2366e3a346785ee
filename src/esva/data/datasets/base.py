"""What every corpus adapter shares: the clip list with its skip report, and file discovery.

An adapter turns a corpus as distributed (a folder of files whose names carry the labels, or a
label CSV beside a video folder) into a list of :class:`~esva.data.sources.ClipSource`. A file
that does not belong (a name that does not parse, a duplicate, a missing video) is never dropped
silently: it goes into :attr:`ClipList.skipped` with the reason, and the adapter logs one warning
with the counts. Problems with the corpus as a whole (a root that does not exist, a CSV with the
wrong columns, an unknown label) raise a one-line :class:`~esva.errors.EsvaError` instead.

Corpora labelled in their file names share one scan, :func:`scan_named_files` (parse each file,
skip what does not parse with the reason, skip duplicates); those with one clip per file need
only a ``make_clip`` (:func:`named_files_adapter`). Corpora read from a label table share the
video look-up (:func:`video_folder`, :func:`attach_videos`).
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Container, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from esva.data.sources import (  # re-exported: the adapters import them from here
    AUDIO_SUFFIXES,
    MEDIA_SUFFIXES,
    VIDEO_SUFFIXES,
    ClipSource,
)
from esva.errors import EsvaError

log = logging.getLogger(__name__)


PathLike = str | os.PathLike
T = TypeVar("T")


@dataclass(frozen=True)
class Skipped:
    """A file (or CSV row) an adapter left out, and why."""

    path: Path
    reason: str


class ClipList(list[ClipSource]):
    """A plain ``list[ClipSource]`` that also carries what was skipped while building it."""

    def __init__(self, clips: Iterable[ClipSource] = (), skipped: Iterable[Skipped] = ()) -> None:
        super().__init__(clips)
        self.skipped: list[Skipped] = list(skipped)

    def skip_counts(self) -> dict[str, int]:
        """``{reason: count}`` over the skipped files, most frequent first."""
        return dict(Counter(s.reason for s in self.skipped).most_common())


@dataclass(frozen=True)
class Adapter:
    """A registered corpus: its loader and its own label set (the ``identity`` target)."""

    name: str
    load: Callable[..., ClipList]
    classes: tuple[str, ...]  # empty when the corpus has no fixed label set (generic CSV)
    description: str


def finish(corpus: str, clips: list[ClipSource], skipped: list[Skipped]) -> ClipList:
    """Wrap the result and log one warning that counts what was skipped (never silent)."""
    result = ClipList(clips, skipped)
    if skipped:
        counts = "; ".join(f"{n} x {reason}" for reason, n in result.skip_counts().items())
        log.warning(
            "%s: kept %d clips, skipped %d files (%s); see ClipList.skipped",
            corpus,
            len(result),
            len(skipped),
            counts,
        )
    else:
        log.info("%s: %d clips", corpus, len(result))
    return result


def scan_named_files(
    root: PathLike | Sequence[PathLike],
    parse: Callable[[Path], T | None],
    *,
    key: Callable[[T], Hashable] | None = None,
    strict: bool = False,
    suffixes: set[str] = AUDIO_SUFFIXES,
) -> tuple[list[T], list[Skipped]]:
    """The scan of a corpus whose labels are in its file and folder names: (found, skipped).

    Every media file under the roots goes to ``parse``, which returns what the file is (None:
    left out by the caller's options, not a problem with the file) or raises ``ValueError``
    with the reason; such a file is skipped with that reason (``strict=True`` raises a
    one-line :class:`EsvaError` naming it instead). With ``key``, a file whose key an earlier
    file already has is skipped as a duplicate of that file.
    """
    found: list[T] = []
    skipped: list[Skipped] = []
    seen: dict[Hashable, Path] = {}
    for base in as_roots(root):
        for path in scan_media(base, suffixes):
            try:
                item = parse(path)
            except ValueError as exc:
                if strict:
                    raise EsvaError(str(exc), path) from None
                skipped.append(Skipped(path, str(exc)))
                continue
            if item is None:
                continue
            if key is not None:
                known = key(item)
                if known in seen:
                    skipped.append(Skipped(path, f"duplicate of {seen[known]}"))
                    continue
                seen[known] = path
            found.append(item)
    return found, skipped


def load_named_files(
    corpus: str,
    root: PathLike | Sequence[PathLike],
    make_clip: Callable[[Path], ClipSource],
    *,
    strict: bool = False,
    suffixes: set[str] = AUDIO_SUFFIXES,
) -> ClipList:
    """A corpus of one clip per file (:func:`scan_named_files`; ``make_clip`` is the parse):
    a second file that makes the same clip name is skipped as a duplicate of the first."""
    clips, skipped = scan_named_files(
        root, make_clip, key=lambda clip: clip.name, strict=strict, suffixes=suffixes
    )
    return finish(corpus, clips, skipped)


def named_files_adapter(
    corpus: str, make_clip: Callable[[Path], ClipSource], classes: tuple[str, ...], description: str
) -> Adapter:
    """The adapter of a one-clip-per-file corpus: ``load(root, *, strict=False)`` is
    :func:`load_named_files` with ``make_clip`` (a file whose name does not parse is skipped with
    the reason, one warning; ``strict=True`` raises a one-line :class:`EsvaError` instead)."""

    def load(root: PathLike | Sequence[PathLike], *, strict: bool = False) -> ClipList:
        return load_named_files(corpus, root, make_clip, strict=strict)

    return Adapter(name=corpus, load=load, classes=classes, description=description)


def name_fields(pattern: re.Pattern[str], stem: str, expected: str) -> tuple[str, ...]:
    """The fields ``pattern`` reads from a file name; ``ValueError(expected)`` when it does not
    match (the message says what a name of the corpus looks like)."""
    match = pattern.match(stem)
    if match is None:
        raise ValueError(expected)
    return match.groups()


def check_codes(corpus: str, codes: Iterable[tuple[str, Container[str], str]]) -> None:
    """``ValueError("<corpus> file name with an unknown <what>")`` for the first field of a file
    name that is not among the corpus's codes; ``codes``: (field, known codes, what) in order."""
    for code, known, what in codes:
        if code not in known:
            raise ValueError(f"{corpus} file name with an unknown {what}")


def corpus_clip(
    corpus: str,
    language: str,
    audio: Path,
    name: str,
    label: str,
    speaker: str,
    extra: dict[str, str],
    text: str | None = None,
) -> ClipSource:
    """An audio clip ``<corpus>_<name>`` by ``<corpus>:<speaker>``, ``extra`` after corpus and
    language: names and speakers that stay unique when corpora are combined."""
    return ClipSource(
        name=f"{corpus}_{name}",
        audio=audio,
        label=label,
        speaker=f"{corpus}:{speaker}",
        text=text,
        extra={"corpus": corpus, "language": language, **extra},
    )


def as_roots(root: PathLike | Sequence[PathLike]) -> list[Path]:
    """One root or several, each checked to be an existing directory."""
    roots = [root] if isinstance(root, str | os.PathLike) else list(root)
    if not roots:
        raise EsvaError("no dataset root given")
    return [check_dir(r) for r in roots]


def check_dir(path: PathLike) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise EsvaError("dataset root does not exist", path)
    if not path.is_dir():
        raise EsvaError("dataset root is not a directory", path)
    return path


def check_file(path: PathLike, what: str = "file") -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise EsvaError(f"{what} not found", path)
    if path.is_dir():
        raise EsvaError(f"is a directory, expected a {what}", path)
    return path


def scan_media(root: Path, suffixes: set[str] = MEDIA_SUFFIXES) -> list[Path]:
    """Media files under ``root`` (recursively), sorted; hidden files and folders are ignored.

    Files with other suffixes (README, CSV, .DS_Store) are not clips and are not reported.
    Symbolic links to folders are followed (corpora are often linked in), each folder once.
    """
    found = []
    seen: set[str] = set()  # real paths of the folders walked: a symlink loop cannot hang us
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in filenames:
            if not filename.startswith(".") and Path(filename).suffix.lower() in suffixes:
                found.append(Path(dirpath) / filename)
    return sorted(found)


def index_videos(video_root: Path) -> dict[str, Path]:
    """``{stem: path}`` for the video files directly in ``video_root`` (one listing, no stats).

    When a stem has several files (``x.mp4`` and ``x.avi``) the first suffix in sorted order
    wins, the same choice on every run.
    """
    index: dict[str, Path] = {}
    for entry in sorted(os.scandir(video_root), key=lambda e: e.name):
        path = Path(entry.path)
        if path.suffix.lower() in VIDEO_SUFFIXES and not entry.name.startswith("."):
            index.setdefault(path.stem, path)
    return index


def video_folder(folder: Path, video_root: PathLike | None, names: Sequence[str]) -> Path:
    """Where a label file's videos are: ``video_root`` when given (it must exist), else the
    first ``folder/<name>`` that is a directory, else ``folder`` itself."""
    if video_root is not None:
        return check_dir(video_root)
    return next((folder / name for name in names if (folder / name).is_dir()), folder)


def attach_videos(
    corpus: str,
    clips: Iterable[ClipSource],
    video_dir: Path,
    stem: Callable[[ClipSource], str] = lambda clip: clip.name,
) -> tuple[list[ClipSource], list[Skipped]]:
    """The clips whose video ``video_dir/<stem>.<ext>`` exists, each given it (one listing of
    the folder, :func:`index_videos`); a clip without one is skipped ("<corpus> video not
    found") and reported, never kept without its media."""
    videos = index_videos(video_dir)
    kept: list[ClipSource] = []
    skipped: list[Skipped] = []
    for clip in clips:
        clip.video = videos.get(stem(clip))
        if clip.video is None:
            skipped.append(Skipped(video_dir / f"{stem(clip)}.mp4", f"{corpus} video not found"))
        else:
            kept.append(clip)
    return kept, skipped
