"""Entry point of the ``esva`` command.

Each sub-command lives in its own module and is registered here. User errors
(:class:`esva.errors.EsvaError`) become one line on stderr and exit status 2, never a traceback.

:func:`run` is the process entry (the ``esva`` script, ``python -m esva.cli.main``); :func:`main`
is the same CLI callable in-process (tests), without :func:`esva.cli.heap.settle`'s effect.
"""

from __future__ import annotations

import sys

import typer

from esva.errors import EsvaError

app = typer.Typer(
    name="esva",
    help="Recognise and explain human emotion in video (ESVA: multi-scale audio features + "
    "audio-video temporal alignment).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from esva.cli import score
    from esva.cli import weights as weights_cli
    from esva.cli.align import align
    from esva.cli.captions import captions
    from esva.cli.demo import demo
    from esva.cli.extract import extract
    from esva.cli.judge import emer
    from esva.cli.llm import explain, train_llm
    from esva.cli.predict import predict
    from esva.cli.serve import serve
    from esva.cli.train import evaluate, train

    app.command()(demo)
    app.command()(train)
    app.command()(evaluate)
    app.command()(align)
    app.command()(extract)
    app.command()(predict)
    app.command("train-llm")(train_llm)
    app.command()(explain)
    app.command()(captions)
    score.app.command("emer")(emer)
    app.command()(serve)
    app.add_typer(score.app, name="score")
    app.add_typer(weights_cli.app, name="weights")


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 2 user or usage error, 130 interrupted)."""
    try:
        result = app(args=argv, prog_name="esva", standalone_mode=False)
    except EsvaError as exc:
        print(f"esva: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("esva: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # Usage errors (missing option, bad value) from typer's bundled click: print click's own
        # short message. Matched by behaviour because typer may vendor its own click classes.
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            if type(exc).__name__ == "NoArgsIsHelpError" or not hasattr(exc, "format_message"):
                exc.show()  # `esva score` alone: the help text is the answer
                return int(exc.exit_code)
            # One line like every other error (click's own is usage + blank + message).
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            print(f"esva: error: {' '.join(exc.format_message().split())}{hint}", file=sys.stderr)
            return int(exc.exit_code)
        if type(exc).__name__ == "Abort":
            print("esva: aborted", file=sys.stderr)
            return 130
        raise
    # In non-standalone mode click returns an Exit's code instead of raising it.
    return result if isinstance(result, int) else 0


def run() -> None:
    """The ``esva`` command: :func:`main`, then exit without a last walk over the frozen heap."""
    from esva.cli import heap

    heap.process_entry = True
    status = main()
    heap.settle()  # finalisation's collection skips what is frozen; atexit handlers still run
    sys.exit(status)


if __name__ == "__main__":
    run()
