"""The progress display both training recipes share: a bar per epoch, one line per epoch."""

from __future__ import annotations

from collections.abc import Sequence


class EpochProgress:
    """A rich progress bar over an epoch's batches and one summary line per epoch.

    ``loss_key`` names the record's training loss; ``val_keys`` the ``val_*`` entries printed
    after it, when the record has them. Disabled (``enabled=False``) it prints nothing, so
    non-main ranks and ``progress: false`` runs stay quiet.
    """

    def __init__(self, enabled: bool, loss_key: str, val_keys: Sequence[str]) -> None:
        self.enabled = enabled
        self.loss_key = loss_key
        self.val_keys = tuple(val_keys)
        self.bar = None
        if enabled:
            from rich.console import Console

            self.console = Console(stderr=True)

    def start(self, title: str, total: int, done: int = 0) -> None:
        if not self.enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task(title, total=total, completed=done, loss=float("nan"))

    def advance(self, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1, loss=loss)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def summary(self, record: dict) -> str:
        """``epoch   3  loss 0.412  weighted_f1 0.713  12.3s`` for one epoch's record."""
        parts = [
            f"epoch {record['epoch']:>3}",
            f"loss {record.get(self.loss_key, float('nan')):.3f}",
        ]
        parts += [f"{key[4:]} {record[key]:.3f}" for key in self.val_keys if key in record]
        parts.append(f"{record['seconds']:.1f}s")
        return "  ".join(parts)

    def log(self, record: dict, improved: bool) -> None:
        if self.enabled:
            self.console.print(self.summary(record) + ("  [green]*best[/]" if improved else ""))
