"""The typer app and what every command shares: the console, --debug, loading the base model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from loracle.model import LoadedModel

app = typer.Typer(
    name="loracle",
    help="Let a local language model learn a folder of documents.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


class State:
    debug: bool = False


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"loracle {version('loracle')}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    _version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print loracle's version and exit."
    ),
) -> None:
    State.debug = debug


# Options every command checks the same way: a bad value is a usage error (exit 2, typer's usage line), found
# before any model loads. Ranges are typer's; `finite` also refuses nan and inf, which float ranges let through.
MAX_THREADS = 1024
MAX_NEW_TOKENS = 32_768


def finite(value: float | None) -> float | None:
    """A typer callback refusing nan and infinities (they pass every float range)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


ModelOption = typer.Option(
    "embedded", "--model", "-m", help="Base model: 'embedded', a folder, a .gguf file or a hub id."
)
ThreadsOption = typer.Option(
    0, "--threads", min=0, max=MAX_THREADS, help="Torch threads (0 = choose; see `loracle doctor`)."
)
EngineOption = typer.Option(
    "",
    "--engine",
    help="Decoding engine: torch or openvino (default: [model] engine in loracle.toml, else torch).",
)
TemperatureOption = typer.Option(0.0, "--temperature", min=0.0, max=5.0, callback=finite, help="0 = greedy.")


def use_engine(engine: str) -> None:
    """Decode with `engine` in this command ('' leaves the choice to loracle.toml or LORACLE_ENGINE)."""
    if engine:
        from loracle.model.engine import select_engine

        select_engine(engine)


def max_tokens_option(default: int, help: str) -> typer.models.OptionInfo:
    """--max-tokens: at least one token, at most MAX_NEW_TOKENS."""
    return typer.Option(default, "--max-tokens", min=1, max=MAX_NEW_TOKENS, help=help)


def load_base(spec: str, threads: int = 0) -> LoadedModel:
    """Load the base model with a spinner (the first load of a GGUF converts it and takes ~30 s)."""
    from loracle.model import load_model
    from loracle.runtime import configure_threads

    configure_threads(threads)
    with err_console.status(f"Loading {spec} model (the first time converts it: ~30 s)..."):
        return load_model(spec)


def load_with_adapters(spec: str, adapters: Sequence[Path], weights: str | None, threads: int = 0) -> LoadedModel:
    """The base model with `adapters` merged in (a one-shot command never needs to remove them).

    The spec and the adapter folders are checked first, so bad input fails before the slow imports and load.
    """
    from loracle.model.adapter_files import read_adapter_config
    from loracle.model.spec import check_model_spec

    weight_list = parse_weights(weights, len(adapters))
    check_model_spec(spec)
    for folder in adapters:
        read_adapter_config(folder)
    from loracle.model import apply_adapters

    lm = load_base(spec, threads)
    return apply_adapters(lm, adapters, weight_list, merge=True) if adapters else lm


def parse_weights(weights: str | None, count: int) -> list[float] | None:
    from loracle.errors import LoracleError

    if not weights:
        return None
    try:
        values = [float(w) for w in weights.split(",")]
    except ValueError as exc:
        raise LoracleError(f"--adapter-weights: not a comma-separated list of numbers: {weights!r}") from exc
    if len(values) != count:
        raise LoracleError(f"--adapter-weights: {len(values)} weights for {count} adapters")
    return values
