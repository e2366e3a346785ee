"""User-facing errors.

Anything a user can cause (a wrong file, a bad column, a config that does not fit a checkpoint)
raises :class:`EsvaError` with a one-line message that names the file and the problem. The CLI
prints that line and exits with status 2, never a traceback. Programming errors stay ordinary
exceptions so that they do show a traceback.
"""

from __future__ import annotations

from pathlib import Path


class EsvaError(Exception):
    """A problem with the user's input, reported as one line (CLI exit status 2)."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        message = " ".join(str(message).split())  # one line, whatever the caller built
        if path is not None:
            message = f"{path}: {message}"
        super().__init__(message)
        self.path = None if path is None else Path(path)
