"""``esva train`` and ``esva evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from esva.cli.options import (
    ConfigOpt,
    EpochsOpt,
    JsonOpt,
    ResumeOpt,
    RunOutOpt,
    override_run,
    report_best,
)


def train(
    config: ConfigOpt,
    resume: ResumeOpt = False,
    out: RunOutOpt = None,
    epochs: EpochsOpt = None,
) -> None:
    """Train the model a config names by its `recipe:` key on the one engine (accelerate: CPU,
    one GPU or many). Recipes: esva (the default: an ESVA model on a feature store), llm,
    face-expert, sync-space, explain-adapter; configs/ has one YAML file for each."""
    run_recipe(config, resume, out, epochs)


def run_recipe(
    config: Path,
    resume: bool,
    out: Path | None,
    epochs: int | None,
    default: str = "esva",
    only: str | None = None,
) -> None:
    """Load a config through the recipe registry, apply ``--out``/``--epochs``, train it and
    print where the best model went (``only``: the one recipe this command may run)."""
    from esva.errors import EsvaError
    from esva.io import check_output_dir
    from esva.recipes.registry import load_run, train_recipe

    name, run = load_run(config, default=default)
    if only is not None and name != only:
        raise EsvaError(f"a config of the {name!r} recipe: train it with `esva train`", config)
    override_run(run, out, epochs)
    check_output_dir(run.train.out_dir, inputs=(run.data.root,), what="--out")
    report_best(run, train_recipe(name, run, resume=resume))


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
    as_json: JsonOpt = False,
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
