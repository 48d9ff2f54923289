"""The `loracle` command line. Each module below registers its commands on the shared typer app."""

from __future__ import annotations

import sys

from loracle.cli import (  # noqa: F401  (each module registers its commands)
    adapter_commands,
    bake_commands,
    eval_commands,
    export_commands,
    hypernet_commands,
    learn_commands,
    mcp_commands,
    model_commands,
    search_commands,
    serve_commands,
    wiki_commands,
)
from loracle.cli.app import State, app, err_console


def main() -> None:
    """Entry point: loracle's own errors become one line and exit code 1 (tracebacks only with --debug); usage
    errors print typer's usage line and exit 2; a command's typer.Exit code is the process's exit code."""
    import warnings

    import typer
    from rich.markup import escape

    from loracle.errors import LoracleError

    # transformers' deprecation notices (raised inside PEFT) are for library authors, not users
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        code = app(standalone_mode=False, prog_name="loracle")
    except LoracleError as exc:
        if State.debug:
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except (KeyboardInterrupt, typer.Abort):
        err_console.print("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except typer.TyperException as exc:  # typer's click errors: bad usage (exit 2) and the like
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            err_console.print(f"[bold red]error:[/] {escape(exc.format_message())}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if State.debug:
            raise
        err_console.print(
            f"[bold red]error:[/] {type(exc).__name__}: {escape(str(exc))} (run with --debug for a traceback)",
            highlight=False,
        )
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)
