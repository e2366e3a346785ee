"""``esva align FILE``: by how many milliseconds the voice and the face are out of step."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from esva.cli.options import AudioOpt, JsonOpt


def align(
    file: Annotated[Path, typer.Argument(help="Video with a face (and its audio track).")],
    audio: AudioOpt = None,
    as_json: JsonOpt = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write a PNG of C(τ) and the local offsets.")
    ] = None,
    max_offset_ms: Annotated[
        float,
        typer.Option(
            "--max-offset-ms",
            help="Search the offset within ± this (20-5000; clamped to half the clip, flagged).",
            min=20,
            max=5000,
        ),
    ] = 500.0,
    window_s: Annotated[
        float,
        typer.Option("--window-s", help="Length of the local windows (Eq. 4).", min=0.2, max=10),
    ] = 1.0,
    detector: Annotated[
        str, typer.Option("--detector", help="Face detector: mtcnn (default) or haar (faster).")
    ] = "mtcnn",
    sync_space: Annotated[
        Path | None,
        typer.Option("--sync-space", help="Folder of other sync heads (default: the shipped)."),
    ] = None,
) -> None:
    """Estimate the audio-video offset of a clip: positive = the audio lags the video.

    Prints the global offset τ* (Eq. 9, sub-frame), its confidence (0-1, peak sharpness) and
    the offsets of 1-s windows over time (drift).
    """
    from esva.errors import EsvaError
    from esva.io import check_output_file, json_dumps
    from esva.sync.clip_media import ClipMediaConfig, load_clip_media
    from esva.sync.estimate import ClipAlignConfig, align_media
    from esva.sync.space import load_sync_space

    for name, value in (("--max-offset-ms", max_offset_ms), ("--window-s", window_s)):
        if not math.isfinite(value):  # click's range check lets NaN through
            raise EsvaError(f"{name} must be a finite number, got {value}")
    if plot is not None:  # before any work: never overwrite the input or fail at the end
        check_output_file(plot, inputs=(file, audio), suffixes=(".png",), what="--plot")
    if detector not in ("mtcnn", "haar"):
        raise EsvaError(f"unknown face detector {detector!r} (choose mtcnn or haar)")
    # The input first: a wrong file is reported before any weights are read.
    media = load_clip_media(file, audio, ClipMediaConfig(detector=detector))
    space = load_sync_space(sync_space)
    config = ClipAlignConfig(max_offset_ms=max_offset_ms, window_s=window_s, hop_s=window_s / 2)
    result = align_media(media, space, config)
    if plot is not None:
        from esva.apps.align import plot_alignment

        plot_alignment(result, plot)
    if as_json:  # the Python API's typed result prints the same object
        from esva.apps.results import AlignResult

        typer.echo(json_dumps(AlignResult.from_alignment(result).to_dict()))
        return
    offset = "undefined" if not math.isfinite(result.offset_ms) else f"{result.offset_ms:+.1f} ms"
    typer.echo(f"{result.file}")
    typer.echo(
        f"  offset {offset} (positive: audio lags the video), confidence {result.confidence:.2f}"
    )
    local = [v for v in result.local_offsets_ms if v is not None]
    if local:
        median = sorted(local)[len(local) // 2]
        typer.echo(
            f"  local offsets over {len(result.local_offsets_ms)} windows: "
            f"{min(local):+.0f} .. {max(local):+.0f} ms (median {median:+.0f})"
        )
    for flag in result.flags:
        typer.echo(f"  warning: {flag}")
    if plot is not None:
        typer.echo(f"  plot -> {plot}")
