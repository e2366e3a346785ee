"""``esva serve``: the web page and the HTTP API (esva.apps.serve) under uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 7860,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", help="Largest upload accepted (MB).", min=0.001)
    ] = 200.0,
    model: Annotated[
        Path | None,
        typer.Option("--model", help="Model folder from `esva train` (default: the shipped one)."),
    ] = None,
    llm_model: Annotated[
        Path | None,
        typer.Option(
            "--llm-model",
            help="Adapter folder from `esva train-llm` (its best/) for /api/explain "
            "(default: esva explain's own, the base SmolLM2 on measured cues).",
        ),
    ] = None,
    no_explain: Annotated[
        bool,
        typer.Option("--no-explain", help="Serve /api/predict only (/api/explain answers 503)."),
    ] = False,
    concurrency: Annotated[
        int, typer.Option(help="Files analysed at the same time (each in a thread).", min=1)
    ] = 1,
    queue: Annotated[
        int, typer.Option(help="Requests that may wait for a slot; more get 503.", min=0)
    ] = 32,
) -> None:
    """Serve a page to drop a video on and see its emotion, and the JSON API beside it."""
    import uvicorn

    from esva.apps.serve import create_app
    from esva.errors import EsvaError

    explainer = None
    if llm_model is not None:
        if not llm_model.is_dir():
            raise EsvaError("LLM adapter folder not found", llm_model)
        explainer = _explainer(llm_model)
    # The models load here, before the port opens: a bad --model is one line, not a traceback.
    app = create_app(
        model,
        max_upload_mb=max_upload_mb,
        concurrency=concurrency,
        queue=queue,
        explainer=explainer,
        default_explain=explainer is None and not no_explain,
    )
    typer.echo(f"esva serve: http://{host}:{port}/  (API: /api/predict, /api/explain)")
    uvicorn.run(app, host=host, port=port, log_level="info")


def _explainer(llm_model: Path) -> Any:
    """``esva explain --json`` for a file, with the adapter loaded once (the object carries the
    recognition answer and the explanation: only the ``reason`` task, as ``esva explain
    --model``)."""
    from esva.apps.explain import Explainer
    from esva.tasks import ADAPTER_TASKS

    explainer = Explainer.from_pretrained(llm_model)

    def explain(path: Path, audio: Path | None, task: str | None) -> dict[str, Any]:
        return explainer.explain(path, audio=audio)

    explain.tasks = ADAPTER_TASKS  # type: ignore[attr-defined]  (as `esva explain --model`)
    return explain
