"""Entry point of the ``esva`` command.

Each sub-command lives in its own module and is registered here. User errors
(:class:`esva.errors.EsvaError`) become one line on stderr and exit status 2, never a traceback.
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

    app.add_typer(score.app, name="score")


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 2 user error)."""
    try:
        app(args=argv, prog_name="esva", standalone_mode=False)
    except EsvaError as exc:
        print(f"esva: error: {exc}", file=sys.stderr)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("esva: aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("esva: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # click usage errors carry their own exit code and message
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
