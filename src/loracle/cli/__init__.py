"""The `loracle` command line. Each module below registers its commands on the shared typer app."""

from __future__ import annotations

import sys

from loracle.cli import (  # noqa: F401  (each module registers its commands)
    adapter_commands,
    eval_commands,
    hypernet_commands,
    learn_commands,
    model_commands,
    search_commands,
    serve_commands,
    wiki_commands,
)
from loracle.cli.app import State, app, err_console


def main() -> None:
    """Entry point: loracle's own errors become one line and exit code 1 (tracebacks only with --debug)."""
    import warnings

    from loracle.errors import LoracleError

    # transformers' deprecation notices (raised inside PEFT) are for library authors, not users
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        app(standalone_mode=False)
    except LoracleError as exc:
        if State.debug:
            raise
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        if State.debug:
            raise
        err_console.print(f"[bold red]error:[/] {type(exc).__name__}: {exc} (run with --debug for a traceback)")
        sys.exit(1)
