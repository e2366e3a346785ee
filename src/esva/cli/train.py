"""``esva train`` and ``esva evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def train(
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
    """Train an ESVA model on a feature dataset (runs under accelerate: CPU, one GPU or many)."""
    from esva.io import check_output_dir
    from esva.recipes.config import RunConfig
    from esva.recipes.train_esva import train as run_training

    run = RunConfig.load(config)
    if out is not None:
        run.train.out_dir = str(out)
    check_output_dir(run.train.out_dir, inputs=(run.data.root,), what="--out")
    if epochs is not None:
        run.train.epochs = epochs
    result = run_training(run, resume=resume)
    if result.main_process:
        typer.echo(
            f"best model (epoch {result.best_epoch}, validation {run.train.monitor} "
            f"{result.best_score:.4f}) -> {result.best_dir}"
        )


def evaluate(
    model: Annotated[
        Path, typer.Option("--model", help="Model folder (config.json + model.safetensors).")
    ],
    data: Annotated[
        Path, typer.Option("--data", help="Feature dataset folder (labels.csv + stream folders).")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for predictions.csv, metrics.json, confusion.png.")
    ],
    split: Annotated[str, typer.Option(help="Split to score ('all' for every clip).")] = "test",
    labels: Annotated[str, typer.Option(help="Clip table inside --data.")] = "labels.csv",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the metrics as one JSON object.")
    ] = False,
) -> None:
    """Predict a feature dataset with a trained model and score it (MERTools-conformant metrics)."""
    from esva.io import check_output_dir, json_dumps
    from esva.recipes.evaluate_model import evaluate_model

    check_output_dir(out, inputs=(model, data), what="--out")
    result = evaluate_model(model, data, out, None if split == "all" else split, labels)["metrics"]
    if as_json:
        typer.echo(json_dumps({k: v for k, v in result.items() if k != "per_class"}))
        return
    from rich.console import Console

    from esva.evaluate.confusion import per_class_table

    console = Console()
    keys = ("n", "accuracy", "weighted_f1", "macro_f1", "uar", "mse", "combined")
    console.print(
        "  ".join(
            f"{k} {result[k]:.4f}" if isinstance(result[k], float) else f"{k} {result[k]}"
            for k in keys
            if k in result
        )
    )
    if "per_class" in result:
        console.print(per_class_table(result["per_class"]))
    console.print(f"written to {out}/")
