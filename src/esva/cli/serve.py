"""``esva serve``: the web page and the HTTP API (esva.apps.serve) under uvicorn."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Annotated

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
        int, typer.Option(help="Files analysed at the same time (at most --workers run).", min=1)
    ] = 1,
    queue: Annotated[
        int, typer.Option(help="Requests that may wait for a slot; more get 503.", min=0)
    ] = 32,
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes running the models (each loads its own copy; a crash on one "
            "file kills only its worker, which is replaced).",
            min=1,
        ),
    ] = 1,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="Another Host header name to serve (repeatable; '*' serves any). Loopback "
            "names and --host are always served.",
        ),
    ] = None,
) -> None:
    """Serve a page to drop a video on and see its emotion, and the JSON API beside it."""
    import uvicorn

    from esva.apps.serve import LOOPBACK_HOSTS, create_app

    sock = bind(host, port)  # a busy port is one line, before minutes of model loading
    try:
        hosts = (*LOOPBACK_HOSTS, host, *(allow_host or ()))
        # The models load here (in the worker), before the port opens: a bad --model is one
        # line, not a traceback.
        app = create_app(
            model,
            max_upload_mb=max_upload_mb,
            concurrency=concurrency,
            queue=queue,
            default_explain=llm_model is None and not no_explain,
            llm_model=llm_model,
            workers=workers,
            allowed_hosts=hosts,
        )
        typer.echo(f"esva serve: http://{host}:{port}/  (API: /api/predict, /api/explain)")
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info"))
        server.run(sockets=[sock])
    finally:
        sock.close()


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (uvicorn listens on it); an address in use or not
    available here is an :class:`EsvaError` (exit 2), not uvicorn's error and exit 3."""
    from esva.errors import EsvaError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise EsvaError(
                f"port {port} on {host} is already in use (another server?); choose another "
                "with --port"
            ) from None
        raise EsvaError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    except (socket.gaierror, UnicodeError, OverflowError) as exc:
        sock.close()
        raise EsvaError(f"cannot listen on {host}:{port} ({exc})") from None
    return sock
