"""``esva predict``: emotion, probabilities, timeline and audio-video offset of one file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def predict(
    file: Annotated[Path, typer.Argument(help="A video (with its audio track) or an audio file.")],
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Model folder from `esva train` (default: the shipped RAVDESS speech model; "
            "non-commercial, see esva/assets/default_model/MODEL_CARD.md).",
        ),
    ] = None,
    audio: Annotated[
        Path | None, typer.Option("--audio", help="Separate audio for a silent video.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write the timeline as a PNG.")
    ] = None,
    window: Annotated[float, typer.Option(help="Timeline window (s).")] = 2.0,
    hop: Annotated[float, typer.Option(help="Timeline hop (s).")] = 0.5,
    assume_default_extraction: Annotated[
        bool,
        typer.Option(
            "--assume-default-extraction",
            help="For a model folder without extraction.json: extract with esva's defaults "
            "(the predictions are wrong if its features were made otherwise).",
        ),
    ] = False,
) -> None:
    """Predict the emotion of FILE with a trained ESVA model."""
    from esva.apps.inference import Recognizer
    from esva.apps.predict import plot_timeline
    from esva.io import check_output_file, json_dumps
    from esva.media.decode import display_name, probe

    if plot is not None:  # before any work: never overwrite the input, fail late or half-write
        check_output_file(plot, inputs=(file, audio), suffixes=(".png",), what="--plot")
    for media in (file, audio):  # the input first: a broken file fails before weights load
        if media is not None:
            probe(media)
    shipped = model is None
    # The shipped model is hash-checked (a damaged install is a one-line error); any model's
    # extraction.json decides how FILE's features are made.
    recognizer = Recognizer.from_pretrained(
        model, assume_default_extraction=assume_default_extraction
    )
    pred = recognizer.predict(file, audio=audio, window_s=window, hop_s=hop)
    if plot is not None:
        plot_timeline(pred, recognizer.model.config.classes, plot)
    if as_json:
        typer.echo(json_dumps(pred.to_dict()))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    # The verdict on its own line: a table title wraps mid-name in narrow terminals.
    verdict = f"{display_name(file.name)}: [bold]{pred.label}[/]"
    if not pred.confident:
        verdict += f" [yellow](not confident: only {pred.duration_s:.2f} s)[/]"
    console.print(verdict)
    table = Table()
    table.add_column("emotion")
    table.add_column("p", justify="right")
    for label, p in sorted(pred.probabilities.items(), key=lambda kv: -kv[1]):
        table.add_row(label, f"{p:.3f}")
    console.print(table)
    if shipped:
        console.print(
            "model: the shipped default (RAVDESS acted English speech, 8 classes; "
            "non-commercial, CC BY-NC-SA 4.0)"
        )
    offset = (
        "n/a (needs audio and a face)"
        if pred.offset_ms is None
        else f"{pred.offset_ms:+.1f} ms (positive = audio lags the video), "
        f"confidence {pred.offset_confidence:.2f}"
    )
    console.print(f"audio-video offset: {offset}")
    console.print(
        f"modalities used: {', '.join(pred.modalities)}"
        + (f"; [yellow]missing: {', '.join(pred.missing)}[/]" if pred.missing else "")
    )
    x = pred.extraction
    settings = ", ".join(
        f"{n}" + (f" {o}" if (o := e.get("options")) else "") for n, e in x["encoders"].items()
    )
    if x.get("fps"):
        settings += f"; faces {x['faces']} at {x['fps']:g} fps"
    if x.get("asr"):
        settings += f"; speech transcribed by {x['asr_model']}"
    console.print(
        f"extraction: {settings}" + (" (assumed defaults)" if x["assumed_default"] else "")
    )
    if pred.flags:
        console.print(f"[yellow]flags: {', '.join(pred.flags)}[/]")
    if len(pred.timeline) > 1:
        console.print("timeline: " + ", ".join(_runs(pred.timeline)))
    if plot is not None:
        console.print(f"timeline plot -> {display_name(plot)}")


def _runs(timeline: list[dict]) -> list[str]:
    """Consecutive windows with one label merged: '0.0-3.0 s neutral' (window extents)."""
    runs: list[list] = []
    for w in timeline:
        if runs and runs[-1][2] == w["label"]:
            runs[-1][1] = w["end_s"]
        else:
            runs.append([w["start_s"], w["end_s"], w["label"]])
    return [f"{a:.1f}-{b:.1f} s {label}" for a, b, label in runs]
