"""A stand-in service for ``esva serve``'s worker processes (tests only): it decodes the upload
with the real decoder, and dies the way a native crash does (``os.abort``) on a file whose last
bytes are ``CRASH``. It is built inside each spawned worker from this importable module."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CRASH_MARK = b"CRASH"


class CrashService:
    name = "crash-test"
    classes = ("neutral", "happy")

    def predict(self, path: Path, audio: Path | None = None) -> dict[str, Any]:
        from esva.media.decode import load_audio

        if Path(path).read_bytes()[-len(CRASH_MARK) :] == CRASH_MARK:
            os.abort()  # SIGABRT: the process ends as on a segfault, no exception to catch
        clip = load_audio(path)
        return {
            "label": "happy",
            "probabilities": {"neutral": 0.4, "happy": 0.6},
            "samples": len(clip.samples),
            "pid": os.getpid(),
        }

    def probe(self, path: Path) -> Any:
        from esva.media.decode import probe

        if Path(path).read_bytes()[-len(CRASH_MARK) :] == b"PROBE":
            os.abort()  # a crash while the headers are read
        return probe(path)

    def explain(self, path: Path, audio: Path | None, task: str | None) -> dict[str, Any]:
        raise AssertionError("explain is off")

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "classes": list(self.classes),
            "explain_unavailable": "explanations are off in this test",
            "tasks": [],
        }


class CrashBatchWorker:
    """Stands in for :class:`esva.apps.batch.BatchWorker`: decodes with the real decoder and
    aborts on a file whose last bytes are ``CRASH``."""

    def __init__(self, model_dir: str | None, assume_default: bool, adapt: bool = False) -> None:
        from esva.apps.batch import _model_identity

        self.classes = _model_identity(model_dir)[1]

    def row(self, path: str) -> tuple[str, dict[str, Any]]:
        from esva.media.decode import load_audio

        if Path(path).read_bytes()[-len(CRASH_MARK) :] == CRASH_MARK:
            os.abort()
        load_audio(path)
        n = len(self.classes)
        return path, {
            "discrete": self.classes[0],
            "probabilities": [1.0 / n] * n,
            "modalities": "audio",
            "offset_ms": None,
            "error": "",
            "experts": {},
        }
