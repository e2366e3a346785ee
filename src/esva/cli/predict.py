"""``esva predict``: emotion, probabilities, timeline and audio-video offset of one file, or of
many files into a MERTools CSV (``--out``; see :mod:`esva.apps.batch`: resumable after a kill).

Exit status: 0 when every file was predicted, 1 when some failed (their rows carry the reason),
2 for a usage error. Heavy libraries (torch, transformers, matplotlib) load only when the
request needs them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from esva.cli.options import AudioOpt


def predict(
    files: Annotated[
        list[str],
        typer.Argument(
            help="Videos (with their audio track) or audio files; folders (searched recursively) "
            "and glob patterns give many files.",
            show_default=False,
        ),
    ],
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Model folder from `esva train` (default: the shipped five-corpus voice model "
            "fused with the face expert; non-commercial, see "
            "esva/assets/default_model/MODEL_CARD.md).",
        ),
    ] = None,
    audio: AudioOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (one file only).")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write the timeline as a PNG (one file only).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write a CSV: name,discrete (MERTools), one probability per class, modalities, "
            "offset_ms, error. A rerun after a kill skips the files already done.",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="Processes for many files (each loads the model).")
    ] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    adapt: Annotated[
        bool,
        typer.Option(
            "--adapt/--no-adapt",
            help="Many files from ONE source that together span the emotions (a corpus, a "
            "session): read each voice against the batch's mean (from 10 clips with a voice). "
            "Not for a folder of one or two emotions: it would remove the emotion itself. "
            "Rows say 'adapted'.",
        ),
    ] = False,
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
    """Predict the emotion of FILES with a trained ESVA model."""
    from esva.errors import EsvaError

    single = len(files) == 1 and Path(files[0]).is_file() and out is None
    if not single:
        if as_json or plot is not None or audio is not None:
            raise EsvaError("--json, --plot and --audio take one file; for many files use --out")
        _predict_many(files, model, out, workers, assume_default_extraction, quiet, adapt)
        return
    file = Path(files[0])
    from esva.apps.inference import Recognizer
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
    from esva.cli import heap

    heap.settle()  # torch and the model stay to the end: no more garbage-collector walks
    pred = recognizer.predict(file, audio=audio, window_s=window, hop_s=hop)
    if plot is not None:
        from esva.apps.predict import plot_timeline  # matplotlib only when a plot is asked for

        plot_timeline(pred, recognizer.classes, plot)
    if as_json:  # the Python API's typed result prints the same object
        from esva.apps.results import EmotionResult

        typer.echo(json_dumps(EmotionResult.from_prediction(pred).to_dict()))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    # The verdict on its own line: a table title wraps mid-name in narrow terminals.
    verdict = f"{display_name(file.name)}: [bold]{pred.label}[/]"
    if not pred.confident:
        verdict += f" [yellow]({uncertainty_note(pred)})[/]"
    console.print(verdict)
    if pred.per_modality is not None:
        console.print(_modality_table(pred))
        for line in _modality_notes(pred):
            console.print(line)
    else:
        table = Table()
        table.add_column("emotion")
        table.add_column("p", justify="right")
        for label, p in sorted(pred.probabilities.items(), key=lambda kv: -kv[1]):
            table.add_row(label, f"{p:.3f}")
        console.print(table)
    if shipped:
        console.print(
            "model: the shipped default: voice model (five acted speech corpora, four "
            "languages; non-commercial research use) fused with the face ensemble (FER+ expert "
            "+ fer-cnn), 7 classes; 'uncertain' below its calibrated threshold"
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
    fusion = x.get("fusion") or {}
    if fusion.get("face_record"):
        settings += f"; {fusion['face_expert']} on the {fusion['face_track']}"
    console.print(
        f"extraction: {settings}" + (" (assumed defaults)" if x["assumed_default"] else "")
    )
    if pred.flags:
        console.print(f"[yellow]flags: {', '.join(pred.flags)}[/]")
    if len(pred.timeline) > 1:
        console.print("timeline: " + ", ".join(_runs(pred.timeline)))
    if plot is not None:
        console.print(f"timeline plot -> {display_name(plot)}")


def uncertainty_note(pred) -> str:
    """Why an answer is not confident, in a few words (the calibrated rule or a short clip)."""
    top = max(pred.probabilities.values(), default=0.0)
    if any(f.startswith("uncertain:") for f in pred.flags):
        return f"uncertain: p = {top:.2f}, below the calibrated threshold"
    if pred.duration_s < 0.5:
        return f"not confident: only {pred.duration_s:.2f} s"
    return "not confident"


def _modality_table(pred):
    """One row per modality (its probabilities over the output classes and its fusion weight),
    then the fused row: the answer."""
    from rich.table import Table

    classes = list(pred.probabilities)
    table = Table()
    table.add_column("")
    table.add_column("weight", justify="right")
    for c in classes:
        table.add_column(c, justify="right")
    for name, m in pred.per_modality.items():
        probs = m["probabilities"]
        table.add_row(name, f"{m['weight']:.2f}", *(f"{probs[c]:.3f}" for c in classes))
    best = max(pred.probabilities, key=pred.probabilities.get)
    table.add_row(
        "[bold]fused[/]",
        "",
        *(f"[bold]{p:.3f}[/]" if c == best else f"{p:.3f}" for c, p in pred.probabilities.items()),
    )
    return table


def _modality_notes(pred) -> list[str]:
    """What each expert's weight followed: speech share, face coverage, confidence."""
    lines = []
    voice, face = pred.per_modality.get("voice"), pred.per_modality.get("face")
    if voice is not None:
        lines.append(
            f"voice: {voice['label']}; speech in {100 * voice.get('speech_share', 0):.0f} % of "
            f"the clip (presence {voice['presence']:.2f}), confidence {voice['confidence']:.2f}"
        )
    if face is not None:
        raw = face.get("raw") or {}
        extra = f"; contempt {raw['contempt']:.2f} (no class in the output)" if raw.get(
            "contempt", 0) >= 0.05 else ""  # fmt: skip
        lines.append(
            f"face: {face['label']}; face tracked in {100 * face['coverage']:.0f} % of the clip, "
            f"most expressive frame at {face['peak_time_s']:.2f} s, confidence "
            f"{face['confidence']:.2f}{extra}"
        )
    if not pred.per_modality:
        lines.append("no expert could answer (no speech and no face)")
    return lines


def _runs(timeline: list[dict]) -> list[str]:
    """Consecutive windows with one label merged: '0.0-3.0 s neutral' (window extents)."""
    runs: list[list] = []
    for w in timeline:
        if runs and runs[-1][2] == w["label"]:
            runs[-1][1] = w["end_s"]
        else:
            runs.append([w["start_s"], w["end_s"], w["label"]])
    return [f"{a:.1f}-{b:.1f} s {label}" for a, b, label in runs]


def _predict_many(
    specs: list[str],
    model: Path | None,
    out: Path | None,
    workers: int,
    assume_default_extraction: bool,
    quiet: bool,
    adapt: bool = False,
) -> None:
    """Many files: one Recognizer per process, a progress bar, a CSV; exit 1 if some failed."""
    from rich.console import Console

    from esva.apps.batch import collect_inputs, run_batch

    paths = collect_inputs(specs)
    if out is not None:  # before any work: a CSV never replaces an input or a folder
        from esva.io import check_output_file

        check_output_file(out, inputs=tuple(paths), suffixes=(".csv",), what="--out")
    console = Console(soft_wrap=True)  # one line per file, however long its path
    summary = run_batch(
        paths,
        model_dir=model,
        out=out,
        workers=workers,
        assume_default_extraction=assume_default_extraction,
        progress=not quiet,
        adapt=adapt,
    )
    if out is None:  # no CSV asked for: one line per file, in input order
        from esva.apps.batch import row_key

        for p in paths:
            row = summary.rows.get(row_key(p))
            if row is None:
                continue
            if row["error"]:
                console.print(f"{p}: [red]failed[/]: {row['error']}", highlight=False)
            else:
                off = row["offset_ms"]
                console.print(
                    f"{p}: [bold]{row['discrete']}[/]"
                    + ("" if off is None else f" (audio lag {off:+.1f} ms)")
                    + ("" if row.get("confident", True) else " [yellow](uncertain)[/]"),
                    highlight=False,
                )
    adaptation = summary.adaptation
    if adaptation is not None and adaptation.clips:
        console.print(
            f"adapted: each voice read against this batch of {adaptation.clips} clips "
            "(assumes one source whose clips span the emotions)",
            highlight=False,
        )
    elif adaptation is not None and adaptation.skipped and len(summary.rows) > 1:
        console.print(f"not adapted: {adaptation.skipped}", highlight=False)
    ok = summary.total - len(summary.failed)
    console.print(
        f"predicted {ok}/{summary.total} file(s)"
        + (f" ({summary.resumed} from an earlier run)" if summary.resumed else "")
        + (f" -> {summary.written}" if summary.written is not None else ""),
        highlight=False,
    )
    if summary.failed:
        err = Console(stderr=True)
        err.print(f"[red]{len(summary.failed)} file(s) failed:[/]", highlight=False)
        for name, reason in summary.failed:
            line = reason if reason.startswith(name) else f"{name}: {reason}"
            err.print(f"  {line}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)
