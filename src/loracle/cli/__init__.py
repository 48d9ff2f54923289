"""The `loracle` command line. Each module below registers its commands on the shared typer app."""

from __future__ import annotations

import sys

from loracle.cli import adapter_commands  # noqa: F401  (registers commands)
from loracle.cli import eval_commands  # noqa: F401  (registers commands)
from loracle.cli import hypernet_commands  # noqa: F401
from loracle.cli import learn_commands  # noqa: F401
from loracle.cli import model_commands  # noqa: F401  (registers commands)
from loracle.cli import search_commands  # noqa: F401
from loracle.cli import serve_commands  # noqa: F401
from loracle.cli import wiki_commands  # noqa: F401
from loracle.cli.app import State, app, err_console


def main() -> None:
    """Entry point: loracle's own errors become one line and exit code 1 (tracebacks only with --debug)."""
    from loracle.errors import LoracleError

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
