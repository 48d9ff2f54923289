"""Options whose value may be left out (`compile --ray` alone, or `--ray ADDRESS`).

Typer cannot declare one (it does not pass click's `flag_value` on), so the command rewrites a bare option (last,
or followed by another option) into `--name=` before click parses: the option then reads "" ("the default").
"""

from __future__ import annotations

from collections.abc import Sequence

import click
from typer.core import TyperCommand


def bare_to_empty(args: Sequence[str], names: Sequence[str]) -> list[str]:
    """`args` with each of the options `names` that has no value of its own given "" as its value."""
    out = list(args)
    for index, arg in enumerate(out):
        if arg == "--":  # what follows is positional
            break
        if arg in names and (index + 1 == len(out) or out[index + 1].startswith("-")):
            out[index] = f"{arg}="
    return out


def optional_value_command(*names: str) -> type[TyperCommand]:
    """A Typer command class whose options `names` may come without a value (then they read "")."""

    class OptionalValueCommand(TyperCommand):
        def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
            return super().parse_args(ctx, bare_to_empty(args, names))

    return OptionalValueCommand
