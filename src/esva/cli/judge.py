"""``esva score emer``: EMER clue / label overlap of explanation files, by a judge LM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def emer(
    predictions: Annotated[list[Path], typer.Argument(help="names,<reasons> CSV files.")],
    gt: Annotated[Path, typer.Option("--gt", help="Reference names,<reasons> CSV.")],
    backbone: Annotated[str, typer.Option(help="Local judge LM.")] = "smollm2-135m-instruct",
    api_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible base URL (uses an API judge).")
    ] = None,
    api_key: Annotated[str | None, typer.Option(help="API key (none for a local server).")] = None,
    api_model: Annotated[str, typer.Option(help="API model name.")] = "gpt-4o-mini",
    mode: Annotated[str, typer.Option(help="expected | generate")] = "expected",
) -> None:
    """Score explanations against EMER references (the paper's judge is retired: see README)."""
    from esva.errors import EsvaError
    from esva.evaluate.emer_judge import (
        JUDGE_NOTE,
        APIJudge,
        EmerJudge,
        LocalJudge,
        read_reasons,
    )

    if mode not in ("expected", "generate"):
        raise EsvaError(f"--mode must be 'expected' or 'generate', not {mode!r}")
    backend = APIJudge(api_url, api_key, api_model) if api_url else LocalJudge(backbone)
    judge = EmerJudge(backend, mode=mode)
    references = read_reasons(gt)
    results = {p.stem: judge.score(references, read_reasons(p)) for p in predictions}
    typer.echo(json.dumps(results, indent=2, ensure_ascii=False))
    typer.echo(JUDGE_NOTE)
