"""``esva demo``: synthetic corpus -> ESVA + ablations -> report folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    out: Annotated[Path, typer.Option("--out", help="Report folder to write.")] = Path(
        "demo-report"
    ),
    epochs: Annotated[int, typer.Option(help="Training epochs per variant.")] = 20,
    clips_per_class: Annotated[int, typer.Option(help="Synthetic clips per emotion class.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the corpus and of training.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """Generate the synthetic corpus, train ESVA and its ablations, and write a report."""
    from rich.console import Console
    from rich.markdown import Markdown

    from esva.io import check_output_dir
    from esva.recipes.demo import DemoConfig, run_demo

    check_output_dir(out, what="--out")
    if out.exists() and any(out.iterdir()):
        from esva.errors import EsvaError

        raise EsvaError(
            "report folder exists and is not empty; choose another --out or remove it", out
        )
    run_demo(
        DemoConfig(
            out_dir=str(out),
            epochs=epochs,
            clips_per_class=clips_per_class,
            seed=seed,
            progress=not quiet,
        )
    )
    console = Console()
    console.print(Markdown((out / "report.md").read_text()))
    console.print(f"Report written to {out}/ (report.md, metrics.json and the PNG plots)")
