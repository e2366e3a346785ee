"""What a long run over many inputs shares (``esva extract``, ``esva predict`` on many files).

Its place among the ranks of an ``accelerate launch`` / ``torchrun`` job, and a rich progress
bar that costs nothing when switched off (non-main ranks, ``--no-progress``).
"""

from __future__ import annotations

import os
from typing import Any


def distributed() -> tuple[int, int, Any]:
    """(rank, world size, accelerate state) under accelerate/torchrun; else (0, 1, None)."""
    # Read the launcher's variable first: a single process must not import accelerate.
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, None
    from accelerate import PartialState

    state = PartialState(cpu=True)
    return state.process_index, state.num_processes, state


class ProgressBar:
    """One rich bar of ``total`` steps titled ``title``; does nothing when not ``enabled``.

    ``stderr=True`` keeps it off stdout, for commands whose stdout carries results; otherwise it
    draws on rich's shared console.
    """

    def __init__(self, enabled: bool, total: int, title: str, stderr: bool = False) -> None:
        self.progress = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn(title),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True) if stderr else None,
            )
            self.progress.start()
            self.task = self.progress.add_task(title, total=total)

    def advance(self) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
