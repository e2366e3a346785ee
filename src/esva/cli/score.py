"""``esva score``: MERTools-conformant scorers.

- ``esva score mer2023``: discrete classes (+ valence) -> accuracy, weighted F1, macro F1, UAR,
  MSE and the MER2023 combined score; per-class table; optional confusion-matrix PNG.
- ``esva score ov``: MER2024 open-vocabulary accuracy / recall / average.
- ``esva score wheel``: MER2025 emotion-wheel accuracy / recall / F-score.

``--json`` prints exactly one JSON object on stdout and nothing else. The scoring modules are
imported inside each command so that ``esva --help`` does not load scikit-learn.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from esva.cli.options import JsonOpt

app = typer.Typer(
    help="Score predictions against gold labels (MER2023 classes / MER2024 OV / MER2025 wheel).",
    no_args_is_help=True,
)

GoldOpt = Annotated[Path, typer.Option("--gold", help="Gold CSV (MERTools format).")]
PredOpt = Annotated[
    Path,
    typer.Option(
        "--pred",
        help="Prediction CSV (same format; extra names "
        "are ignored, missing gold names are errors).",
    ),
]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict-parse",
        help="Read each list cell as a Python list literal (ast.literal_eval). Default: split it "
        "on quote characters like MERTools, which cuts a word containing an apostrophe in two "
        "(\"don't care\" -> 'don', 't care').",
    ),
]


class Level(StrEnum):
    level1 = "level1"
    level2 = "level2"


class Source(StrEnum):
    mer2025 = "mer2025"
    mer2026 = "mer2026"


def _emit(result: dict[str, Any], as_json: bool, title: str, keys: tuple[str, ...]) -> None:
    """Print the headline metrics as a rich table, or the whole result as one JSON object."""
    if as_json:
        from esva.io import json_dumps

        typer.echo(json_dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in keys:
        if key in result:
            value = result[key]
            # repr of a float is its shortest exact form: the digits MERTools prints.
            table.add_row(key, repr(value) if isinstance(value, float) else str(value))
    Console().print(table)


@app.command(
    "mer2023",
    help="MER2023 discrete metrics from name,discrete[,valence] CSVs.\n\n"
    "Prints accuracy, weighted F1 (sklearn average='weighted', the MER2023/2024 metric), macro "
    "F1, UAR (balanced accuracy) and, when both files have a valence column, the valence MSE and "
    "the MER2023 combined score = weighted F1 - 0.25 * MSE; then precision/recall/F1/support per "
    "class.",
)
def mer2023(
    gold: GoldOpt,
    pred: PredOpt,
    classes: Annotated[
        str | None,
        typer.Option(
            "--classes",
            help="Class names: a comma list (e.g. neutral,calm,happy,...) or a preset: mer2023 "
            "(default: neutral,angry,happy,sad,worried,surprise) or ravdess (8 classes).",
        ),
    ] = None,
    confusion: Annotated[
        Path | None,
        typer.Option(
            "--confusion",
            help="Write the row-normalised confusion matrix (with counts) to this PNG.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """MER2023 discrete metrics (see the command help)."""
    from esva.evaluate.classification import score_classification
    from esva.evaluate.mer_files import check_names, parse_classes, read_discrete

    if confusion is not None:  # before scoring: never overwrite an input or fail at the end
        from esva.io import check_output_file

        check_output_file(confusion, inputs=(gold, pred), suffixes=(".png",), what="--confusion")
    class_list = parse_classes(classes)
    gold_labels, gold_valence = read_discrete(gold, class_list)
    pred_labels, pred_valence = read_discrete(pred, class_list)
    names = check_names(gold_labels, pred_labels, pred)
    result = score_classification(gold_labels, pred_labels, class_list, gold_valence, pred_valence)
    if confusion is not None:
        from esva.evaluate.confusion import plot_confusion

        plot_confusion(
            [gold_labels[n] for n in names],
            [pred_labels[n] for n in names],
            class_list,
            confusion,
            title=f"{pred.name} (n={len(names)})",
        )
        result["confusion_png"] = str(confusion)
    if as_json:
        _emit(result, True, "", ())
        return
    from rich.console import Console

    from esva.evaluate.confusion import per_class_table

    _emit(
        result,
        False,
        f"MER2023 scores: {pred.name} vs {gold.name}",
        ("n", "accuracy", "weighted_f1", "macro_f1", "uar", "mse", "combined"),
    )
    Console().print(per_class_table(result["per_class"], title="per class"))
    if (gold_valence is None) != (pred_valence is None):
        typer.echo("note: valence is in only one file, so mse/combined are not computed", err=True)
    if confusion is not None:
        typer.echo(f"confusion matrix written to {confusion}")


@app.command(
    "ov",
    help="MER2024 open-vocabulary scores from name,openset CSVs.\n\n"
    "After mapping every word to its synonym group: accuracy = mean |G∩P|/|P| and recall = mean "
    "|G∩P|/|G| over samples, average = their mean (MERTools main-ov.py). List cells are parsed "
    "like MERTools: the text between [ and ] is split on quote characters (so a word with an "
    "apostrophe is cut in two); --strict-parse reads them as Python list literals instead.",
)
def ov(
    gold: GoldOpt,
    pred: PredOpt,
    synonyms: Annotated[
        Path | None,
        typer.Option(
            "--synonyms",
            help="MERTools' openset-synonym.zip (one <name>.npy of synonym groups per sample). "
            "Without it words are compared after lower-casing only.",
        ),
    ] = None,
    strict_parse: StrictOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """MER2024 open-vocabulary scores (see the command help)."""
    from esva.evaluate.openset import score_openset_files

    result = score_openset_files(gold, pred, synonyms, strict=strict_parse)
    result["parser"] = "strict" if strict_parse else "mertools-quote-split"
    _emit(
        result,
        as_json,
        f"MER2024 open-vocabulary scores: {pred.name}",
        ("n", "accuracy", "recall", "average"),
    )


@app.command(
    "wheel",
    help="MER2025 emotion-wheel scores from name,openset CSVs.\n\n"
    "Words are mapped onto each of the 5 emotion wheels (format.csv -> synonym.xlsx -> wheelN), "
    "accuracy = mean |G∩P|/|P| and recall = mean |G∩P|/|G| are computed per wheel and averaged "
    "over the wheels. fscore (harmonic mean per wheel, averaged; MER2025's official EW metric) "
    "and average = (accuracy + recall) / 2 are reported too.",
)
def wheel(
    gold: GoldOpt,
    pred: PredOpt,
    wheel_dir: Annotated[
        Path,
        typer.Option(
            "--wheel-dir",
            envvar="ESVA_WHEEL_DIR",
            help="MERTools' emotion_wheel folder (format.csv, synonym.xlsx, wheel1-5.xlsx; "
            "wheel_mapping.npz for --mapping mer2026).",
        ),
    ] = Path("emotion_wheel"),
    level: Annotated[Level, typer.Option("--level", help="Wheel ring to cluster words at.")] = (
        Level.level1
    ),
    mapping: Annotated[
        Source,
        typer.Option(
            "--mapping",
            help="mer2025: build the maps from the spreadsheets (MER2025 code); "
            "mer2026: load wheel_mapping.npz (MER2026 code; a few '-less' word forms differ).",
        ),
    ] = Source.mer2025,
    strict_parse: Annotated[
        bool,
        typer.Option(
            "--strict-parse",
            help="Read each list cell as a Python list literal. Default: MER2025's parser, which "
            "splits on quotes and commas (so plain 'happy, sad' lists work too).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """MER2025 emotion-wheel scores (see the command help)."""
    from esva.evaluate.wheel import score_wheel_files

    result = score_wheel_files(
        gold, pred, wheel_dir, level=level.value, source=mapping.value, strict=strict_parse
    )
    _emit(
        result,
        as_json,
        f"MER2025 emotion-wheel scores ({level.value}, {mapping.value}): {pred.name}",
        ("n", "accuracy", "recall", "fscore", "average"),
    )
    if not as_json:
        from rich.console import Console

        lines = [
            f"{w}: accuracy {v['accuracy']:.4f} recall {v['recall']:.4f} "
            f"fscore {v['fscore']:.4f} (n={v['n']})"
            for w, v in result["per_wheel"].items()
        ]
        Console().print("\n".join(lines))
