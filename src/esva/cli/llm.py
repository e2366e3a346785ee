"""``esva train-llm`` and ``esva explain``: the language-model path (Emotion-LLaMA's recipe)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from esva.cli.options import (
    AudioOpt,
    ConfigOpt,
    EpochsOpt,
    JsonOpt,
    ResumeOpt,
    RunOutOpt,
)
from esva.errors import EsvaError
from esva.tasks import ADAPTER_TASKS, DEFAULT_EXPLAIN_TASK, EXPLAIN_TASKS, check_task


def train_llm(
    config: ConfigOpt,
    resume: ResumeOpt = False,
    out: RunOutOpt = None,
    epochs: EpochsOpt = None,
) -> None:
    """Instruction-tune feature projectors + LoRA on a language model (SmolLM2 offline by
    default) for emotion recognition and reasoning; runs under accelerate."""
    from esva.cli.train import run_recipe

    run_recipe(config, resume, out, epochs, default="llm", only="llm")


def explain(
    file: Annotated[Path, typer.Argument(help="A video (with its audio track) or an audio file.")],
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="An adapter folder from `esva train-llm` (its best/). Default: the shipped "
            "recogniser + measured cues + the shipped explanation adapter (SmolLM2 + LoRA).",
        ),
    ] = None,
    task: Annotated[
        str,
        typer.Option(
            "--task",
            help="emotion (the answer only), reason (all cues), face or voice (that "
            "modality's cues). Without --model only.",
        ),
    ] = DEFAULT_EXPLAIN_TASK,
    llm: Annotated[
        str | None,
        typer.Option(
            "--llm",
            help="A base LM, untuned, writes the explanation instead of the shipped adapter "
            "(smollm2-135m-instruct offline, a local model folder, e.g. Llama-2-7b-chat-hf, or "
            "a .gguf file).",
        ),
    ] = None,
    adapter: Annotated[
        Path | None,
        typer.Option(
            "--adapter",
            help="An explanation adapter folder built like the shipped one "
            "(benchmarks/train_explain_adapter.py). Default: the shipped adapter.",
        ),
    ] = None,
    audio: AudioOpt = None,
    as_json: JsonOpt = False,
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
    """Recognise the emotion in FILE and explain it in words, from cues that were measured."""
    check_task(task, EXPLAIN_TASKS, "--task")
    if not file.exists():
        raise EsvaError("file not found", file)
    if audio is not None and not audio.exists():
        raise EsvaError("file not found", audio)
    from esva.io import json_dumps

    if model is None:
        from esva.apps.explain import CueExplainer

        if adapter is not None and llm is not None:
            raise EsvaError("--adapter and --llm exclude each other (an adapter has its own LM)")
        if adapter is not None and not adapter.is_dir():
            raise EsvaError("adapter folder not found", adapter)
        explainer = CueExplainer.from_pretrained(
            backbone=llm, asr=asr, adapter=adapter if adapter is not None else "default"
        )
        result = explainer.explain(
            file, audio=audio, task=task, max_new_tokens=max_new_tokens or 40
        )
    else:
        if task not in ADAPTER_TASKS or llm is not None or adapter is not None:
            raise EsvaError(
                "--task, --llm and --adapter are for the default explainer, not with --model"
            )
        from esva.apps.explain import explain_file

        result = explain_file(
            file,
            model,
            audio=audio,
            max_new_tokens=max_new_tokens,
            asr=asr,
            assume_default_extraction=assume_default_extraction,
        )
    if as_json:  # the Python API's typed result prints the same object
        from esva.apps.results import explain_result

        typer.echo(json_dumps(explain_result(result).to_dict(), default=float))
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    console.print(f"{file.name}: [bold]{result['label']}[/]")
    console.print(escape(result["explanation"]))
    if result["transcript"]:
        console.print(escape(f'transcript: "{result["transcript"]}"'))
    if result.get("offset_ms") is not None:  # the recogniser's, when it measured one
        console.print(
            f"audio-video offset: {result['offset_ms']:+.1f} ms (positive = audio lags the "
            f"video), confidence {result['offset_confidence']:.2f}"
        )
    if result["flags"]:
        console.print(f"[yellow]flags: {escape(', '.join(result['flags']))}[/]")
