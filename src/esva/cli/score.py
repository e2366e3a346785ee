"""``esva score``: MERTools-conformant scorers (filled in by the scoring work)."""

import typer

app = typer.Typer(help="Score predictions against gold labels (MER2023 / MER2024 OV / MER2025 wheel).",
                  no_args_is_help=True)
