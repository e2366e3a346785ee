"""The task names esva answers to, defined once (the CLI, the Python API and the server use these).

Two vocabularies, each in one place:

- :data:`PIPELINE_TASKS`: what ``esva.pipeline(task)`` builds (one per app: recognise, align,
  explain).
- :data:`EXPLAIN_TASKS`: what an explanation is about (``esva explain --task``, the ``task``
  field of ``POST /api/explain``, ``esva.pipeline("explain")(..., task=...)``), with the
  modalities each one's cues come from (:data:`TASK_MODALITIES`). An adapter from
  ``esva train-llm`` answers the recognition prompt and the reasoning prompt together, so it
  takes only :data:`ADAPTER_TASKS`.

The training recipes' prompt kinds (``recognition`` / ``reasoning`` in :mod:`esva.llm.data`)
are a model's internals, not a task a user asks for: they are not accepted here.
"""

from __future__ import annotations

from collections.abc import Sequence

from esva.errors import EsvaError

PIPELINE_TASKS: tuple[str, ...] = ("emotion", "align", "explain")

EXPLAIN_TASKS: tuple[str, ...] = ("emotion", "reason", "face", "voice")
DEFAULT_EXPLAIN_TASK = "reason"
# The cues each explanation task reads ("words": the transcript).
TASK_MODALITIES: dict[str, tuple[str, ...]] = {
    "emotion": ("voice", "face", "words"),
    "reason": ("voice", "face", "words"),
    "face": ("face",),
    "voice": ("voice", "words"),
}
# An `esva train-llm` adapter writes its recognition answer and its reasoning whatever is asked.
ADAPTER_TASKS: tuple[str, ...] = (DEFAULT_EXPLAIN_TASK,)


def check_task(task: str, choices: Sequence[str] = EXPLAIN_TASKS, what: str = "task") -> str:
    """``task`` when it is one of ``choices``; otherwise a one-line :class:`EsvaError` that
    names the choices (``what``: how the caller spells the option, e.g. ``--task``)."""
    if task not in choices:
        raise EsvaError(f"unknown {what} {task!r} (choose {', '.join(choices)})")
    return task


__all__ = [
    "ADAPTER_TASKS",
    "DEFAULT_EXPLAIN_TASK",
    "EXPLAIN_TASKS",
    "PIPELINE_TASKS",
    "TASK_MODALITIES",
    "check_task",
]
