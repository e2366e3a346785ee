"""Options that several commands take, declared once: the same flag, type and help everywhere,
and what the two training commands do with their run options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

# `esva train` and `esva train-llm`: a YAML run config and what may override it.
ConfigOpt = Annotated[
    Path, typer.Option("--config", help="YAML run config (model/data/train sections).")
]
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Continue the run in the output folder exactly.")
]
RunOutOpt = Annotated[
    Path | None, typer.Option("--out", help="Output folder (overrides train.out_dir).")
]
EpochsOpt = Annotated[int | None, typer.Option(help="Override train.epochs.")]

AudioOpt = Annotated[
    Path | None, typer.Option("--audio", help="Separate audio for a silent video.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


def override_run(run: Any, out: Path | None, epochs: int | None) -> None:
    """``--out`` and ``--epochs`` over a run config's ``train`` section."""
    if out is not None:
        run.train.out_dir = str(out)
    if epochs is not None:
        run.train.epochs = epochs


def report_best(run: Any, result: Any) -> None:
    """A training command's last line, on the main process only: where the best model went."""
    if result.main_process:
        monitor = str(run.train.monitor)
        # The engine maximises its score, so a loss is monitored as its negative: say the loss.
        score = -result.best_score if monitor.endswith("loss") else result.best_score
        typer.echo(
            f"best model (epoch {result.best_epoch}, validation {monitor} {score:.4f}) -> "
            f"{result.best_dir}"
        )
