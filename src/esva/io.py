"""Atomic file and directory writes.

A run that is killed (Ctrl-C, kill -9, a full disk) must never leave a half-written file where a
reader expects a complete one: everything is written to a temporary sibling and renamed into
place, which POSIX guarantees to be atomic within one file system.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    """The process umask (read via /proc where possible: setting it to read it back is racy)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _as_created(path: str | Path, directory: bool = False) -> None:
    """Give a temporary file/dir the permissions open()/mkdir() would have (mkstemp and mkdtemp
    make them private, 0600/0700, which would leak into the renamed result)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _temp_prefix(name: str) -> str:
    # The writer's pid in the name lets remove_stale_temps tell a live writer's temporary file
    # from the orphan of a process killed mid-write (kill -9 runs no cleanup).
    return f".{name}.{TEMP_PID_TAG}{os.getpid()}."


TEMP_PID_TAG = "pid"
_TEMP_NAME = re.compile(r"^\..*\.pid(\d+)\.[^/]*\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(directory: str | Path) -> list[Path]:
    """Delete the temporary files/dirs in ``directory`` (not below) left by a killed writer.

    Only names made by :func:`atomic_write`, :func:`atomic_path` or :func:`atomic_dir` whose
    writer process no longer exists are removed; a live writer's temporary file is left alone.
    One directory scan: call it once when a run (re)starts, not per write.
    """
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or _alive(int(match.group(1))):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_write(
    path: str | Path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    _as_created(tmp)
    if "b" in mode:
        encoding = newline = None  # a binary file has no text layer
    with (
        _replace_on_success(tmp, path),
        os.fdopen(fd, mode, encoding=encoding, newline=newline) as handle,
    ):
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path`` with any library (safetensors, matplotlib, ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=_temp_prefix(path.stem), suffix=f"{path.suffix}.tmp", dir=path.parent
    )
    os.close(fd)
    _as_created(tmp)
    with _replace_on_success(tmp, path):
        yield Path(tmp)


@contextlib.contextmanager
def _replace_on_success(tmp: str, path: Path) -> Iterator[None]:
    """Rename the finished temporary file ``tmp`` onto ``path`` when the block ends normally;
    remove it when the block fails (an exception, Ctrl-C), so no half-written file is left."""
    try:
        yield
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` as a whole on success.

    The old directory (if any) is moved aside first and deleted after the swap, so a reader
    sees either the complete old or the complete new directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent))
    _as_created(tmp, directory=True)
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: str | Path, obj: Any, strict: bool = False) -> None:
    """Write ``obj`` as indented JSON, atomically.

    ``strict=True`` refuses NaN/inf (:func:`json_dumps`): use it for results a user reads.
    Internal state files keep Python's ``-Infinity`` (a training run's "no best score yet").
    """
    # Serialised before the file is opened: a refused value leaves no temporary file behind.
    if strict:
        text = json_dumps(obj, indent=2, sort_keys=False)
    else:
        text = json.dumps(obj, indent=2, sort_keys=False)
    with atomic_write(path) as handle:
        handle.write(text + "\n")


def read_json(path: str | Path) -> Any:
    """Read JSON, turning a missing, unreadable (a folder, a symlink loop) or malformed file into
    a one-line :class:`EsvaError`."""
    from esva.errors import EsvaError

    path = Path(path)
    try:
        return json.loads(read_text(path, "JSON file"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EsvaError(f"not valid JSON ({exc})", path) from None


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path`` (a ``UnicodeDecodeError`` is the caller's: it knows the
    format); a missing or unreadable file is one :class:`EsvaError` line naming ``what``."""
    from esva.errors import EsvaError

    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EsvaError(f"{what} not found", path) from None
    except IsADirectoryError:
        raise EsvaError(f"is a directory (folder), not a {what}", path) from None
    except OSError as exc:  # a symlink loop, no permission, an I/O error
        reason = exc.strerror or type(exc).__name__
        raise EsvaError(f"cannot read the {what} ({reason})", path) from None


def json_dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that refuses NaN and infinity (``allow_nan=False``): they are not JSON, and
    a NaN printed as a score or a probability is silent nonsense. Raises ``ValueError`` naming
    the first offending key, a programming error (the caller should have flagged the value)."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError:
        where = _first_non_finite(obj)
        raise ValueError(f"refusing to write a non-finite number into JSON at {where}") from None


def _first_non_finite(obj: Any, where: str = "$") -> str | None:
    import math

    if isinstance(obj, float) and not math.isfinite(obj):
        return where
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list | tuple):
        items = enumerate(obj)
    else:
        return None
    for key, value in items:
        found = _first_non_finite(
            value, f"{where}.{key}" if isinstance(obj, dict) else f"{where}[{key}]"
        )
        if found:
            return found
    return None


# Longest file name most Linux file systems accept (bytes, not characters).
NAME_MAX = 255


def _display(path: Path) -> str:
    # A name that is not UTF-8 (Linux allows any bytes) prints with \xNN escapes, not a crash.
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_file(
    path: str | os.PathLike,
    inputs: tuple[str | os.PathLike | None, ...] = (),
    suffixes: tuple[str, ...] = (),
    what: str = "--out",
) -> Path:
    """Refuse an output file path that would crash late or destroy something, before any work.

    Refused (one-line :class:`~esva.errors.EsvaError` naming ``what`` and the path): a path that
    is one of ``inputs`` (or a link to it: writing would destroy the input), an existing
    directory, a suffix outside ``suffixes`` (when given), a file name longer than the file
    system allows, and a parent that is a file or a folder we cannot write. An existing output
    file is replaced (atomically), as users expect from ``-o``.
    """
    from esva.errors import EsvaError

    path = Path(path)
    shown = _display(path)
    for source in inputs:
        if source is not None and (
            _same_file(path, Path(source)) or path.resolve() == Path(source).resolve()
        ):
            raise EsvaError(f"{what} would overwrite the input file; choose another path", shown)
    if path.is_dir():
        raise EsvaError(f"{what} is a directory; give a file name", shown)
    if suffixes and path.suffix.lower() not in suffixes:
        raise EsvaError(
            f"{what} must end in {' or '.join(suffixes)} (got {path.suffix or 'no suffix'!r})",
            shown,
        )
    if len(os.fsencode(path.name)) > NAME_MAX - 16:  # room for the temporary sibling's affixes
        raise EsvaError(
            f"{what} file name is too long ({len(os.fsencode(path.name))} bytes)", shown
        )
    _check_parent(path, what, shown)
    return path


def check_output_dir(
    path: str | os.PathLike, inputs: tuple[str | os.PathLike | None, ...] = (), what: str = "--out"
) -> Path:
    """Refuse an output folder that is an existing file, one of ``inputs``, or not writable."""
    from esva.errors import EsvaError

    path = Path(path)
    shown = _display(path)
    if path.exists() and not path.is_dir():
        raise EsvaError(f"{what} is an existing file, not a folder", shown)
    for source in inputs:
        if source is not None and _same_file(path, Path(source)):
            raise EsvaError(f"{what} is the input folder; choose another path", shown)
    if len(os.fsencode(path.name)) > NAME_MAX - 16:
        raise EsvaError(
            f"{what} folder name is too long ({len(os.fsencode(path.name))} bytes)", shown
        )
    _check_parent(path, what, shown)
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise EsvaError(f"{what} folder is not writable", shown)
    return path


def _check_parent(path: Path, what: str, shown: str) -> None:
    from esva.errors import EsvaError

    # The nearest existing ancestor must be a writable folder (missing ones are created).
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise EsvaError(f"{what}: {_display(parent)} is a file, not a folder", shown)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EsvaError(f"{what}: folder {_display(parent)} is not writable", shown)
    # os.access says yes to root everywhere, yet /proc, an immutable (chattr +i) or a read-only
    # mounted folder refuses the temporary sibling every write starts with: try one.
    try:
        fd, probe = tempfile.mkstemp(prefix=".esva-probe-", suffix=".tmp", dir=parent)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise EsvaError(
            f"{what}: cannot create files in folder {_display(parent)} ({reason})", shown
        ) from None
    os.close(fd)
    os.unlink(probe)
