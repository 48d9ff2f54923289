"""The typer app and what every command shares: the console, --debug, loading the base model."""

from __future__ import annotations

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


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    State.debug = debug


ModelOption = typer.Option(
    "embedded", "--model", "-m", help="Base model: 'embedded', a folder, a .gguf file or a hub id."
)
ThreadsOption = typer.Option(0, "--threads", help="Torch threads (0 = choose; see `loracle doctor`).")


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
