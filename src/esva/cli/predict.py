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
) -> None:
    """Predict the emotion of FILE with a trained ESVA model."""
    from esva.apps.predict import model_extractor, plot_timeline, predict_file
    from esva.io import check_output_file, json_dumps
    from esva.media.decode import probe
    from esva.model import ESVAModel

    if plot is not None:  # before any work: never overwrite the input, fail late or half-write
        check_output_file(plot, inputs=(file, audio), suffixes=(".png",), what="--plot")
    for media in (file, audio):  # the input first: a broken file fails before weights load
        if media is not None:
            probe(media)
    shipped = model is None
    if shipped:
        from esva.assets import default_model_dir

        model = default_model_dir()  # hash-checked: a damaged install is a one-line error
    esva_model = ESVAModel.from_pretrained(model)
    # The folder's encoder_options.json (e.g. the Whisper layer) shapes the extraction.
    extractor = model_extractor(model, esva_model)
    pred = predict_file(
        file, esva_model, audio=audio, window_s=window, hop_s=hop, extractor=extractor
    )
    pred.model = "default (esva/assets/default_model)" if shipped else str(model)
    if plot is not None:
        plot_timeline(pred, esva_model.config.classes, plot)
    if as_json:
        typer.echo(json_dumps(pred.to_dict()))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    # The verdict on its own line: a table title wraps mid-name in narrow terminals.
    console.print(f"{file.name}: [bold]{pred.label}[/]")
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
    if pred.flags:
        console.print(f"[yellow]flags: {', '.join(pred.flags)}[/]")
    if len(pred.timeline) > 1:
        console.print("timeline: " + ", ".join(_runs(pred.timeline)))
    if plot is not None:
        console.print(f"timeline plot -> {plot}")


def _runs(timeline: list[dict]) -> list[str]:
    """Consecutive windows with one label merged: '0.0-3.0 s neutral' (window extents)."""
    runs: list[list] = []
    for w in timeline:
        if runs and runs[-1][2] == w["label"]:
            runs[-1][1] = w["end_s"]
        else:
            runs.append([w["start_s"], w["end_s"], w["label"]])
    return [f"{a:.1f}-{b:.1f} s {label}" for a, b, label in runs]
