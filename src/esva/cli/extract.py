"""``esva extract``: raw media -> feature store (resumable, parallel, shardable)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from esva.cli.options import JsonOpt

MAX_FPS = 240.0  # faster than any camera esva meets; a larger rate is a typo
MAX_WORKERS = 64


def _names(value: str) -> list[str]:
    return (
        []
        if value.strip().lower() in ("", "none")
        else [v.strip() for v in value.split(",") if v.strip()]
    )


def extract(
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="Clip list CSV (path,label[,speaker,split,text]), a folder, a glob, "
            "or a dataset name. Clips are named by file stem; a stem over 96 bytes, or two files "
            "with one stem (a.mp4 and a.wav), get a '-' + 8-hex-digit hash suffix.",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Feature store folder (created; resumed if it exists).")
    ],
    root: Annotated[
        Path | None, typer.Option("--root", help="Corpus folder for a dataset name.")
    ] = None,
    audio: Annotated[
        str, typer.Option(help="Audio encoders, comma-separated, or 'none'.")
    ] = "whisper-tiny",
    visual: Annotated[
        str, typer.Option(help="Visual encoders, comma-separated, or 'none'.")
    ] = "fer-cnn",
    text: Annotated[str, typer.Option(help="Text encoders (e.g. minilm), or 'none'.")] = "none",
    fps: Annotated[float, typer.Option(help="Video sampling rate for faces.")] = 25.0,
    faces: Annotated[str, typer.Option(help="Face detector: haar or mtcnn.")] = "haar",
    asr: Annotated[
        bool,
        typer.Option(
            help="Transcribe speech when a text encoder is asked and the clip has no transcript."
        ),
    ] = True,
    workers: Annotated[int, typer.Option(help="Parallel processes (one torch thread each).")] = 1,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Try failed clips again.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Decode clips, track faces, run the encoders; write one feature file per clip and encoder."""
    import math

    from esva.errors import EsvaError
    from esva.extract.inputs import resolve_inputs
    from esva.extract.pipeline import ExtractConfig
    from esva.extract.run import run_extract
    from esva.io import check_output_dir, json_dumps

    # Options first, before any file is opened: a bad value is a one-line error, not a
    # traceback from deep inside the frame sampler.
    if not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise EsvaError(f"--fps must be a number in (0, {MAX_FPS:g}], got {fps:g}")
    if not 1 <= workers <= MAX_WORKERS:
        raise EsvaError(f"--workers must be between 1 and {MAX_WORKERS}, got {workers}")
    check_output_dir(out, what="--out")
    if faces not in ("haar", "mtcnn"):
        raise EsvaError(f"--faces must be haar or mtcnn, got {faces!r}")
    config = ExtractConfig(
        audio=_names(audio), visual=_names(visual), text=_names(text), fps=fps, faces=faces, asr=asr
    )
    if not config.encoders:
        raise EsvaError("no encoders asked for (--audio, --visual and --text are all 'none')")
    sources = resolve_inputs(data, root)
    summary = run_extract(
        sources,
        out,
        config,
        workers=workers,
        retry_failed=retry_failed,
        progress=not (quiet or as_json),
    )
    if as_json:
        typer.echo(json_dumps(summary.to_dict()))
        return
    _print_summary(summary, out)


def _print_summary(summary, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"esva extract -> {out}")
    table.add_column("clips")
    table.add_column("count", justify="right")
    table.add_row("done", str(summary.done))
    table.add_row("skipped (already in the store)", str(summary.skipped))
    table.add_row("failed", str(len(summary.failed)))
    for flag, n in sorted(summary.degraded.items()):
        table.add_row(f"  degraded: {flag}", str(n))
    console.print(table)
    for clip, reason in summary.failed[:10]:
        console.print(f"[red]failed[/] {clip}: {reason}")
    if len(summary.failed) > 10:
        console.print(f"... and {len(summary.failed) - 10} more (see {out}/manifest.jsonl)")
    rate = summary.done / summary.seconds if summary.seconds else 0.0
    console.print(f"{summary.seconds:.1f} s ({rate:.2f} clips/s). Store: {summary.store}")
