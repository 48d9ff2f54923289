"""`loracle bake`: an instruction trained into a LoRA adapter (loracle.bake)."""

from __future__ import annotations

from pathlib import Path

import typer

from loracle.bake.config import BakeConfig
from loracle.cli.adapter_commands import parse_options
from loracle.cli.app import ModelOption, ThreadsOption, app, console, err_console, load_base

#: what -o may set (the instruction is the argument)
OPTIONS = ", ".join(name for name in BakeConfig.model_fields if name != "instruction")


@app.command("bake")
def bake_command(
    instruction: str = typer.Argument(..., help="What the system prompt would say, e.g. 'Answer in French.'"),
    out: Path = typer.Option(..., "--out", help="The adapter folder to write (PEFT, with manifest.json)."),
    steps: int | None = typer.Option(None, "--steps", min=1, max=100_000, help="Training steps (default 48)."),
    option: list[str] = typer.Option(
        [], "--option", "-o", help=f"A bake option KEY=VALUE (repeatable), e.g. rank=4. Options: {OPTIONS}."
    ),
    model: str = ModelOption,
    threads: int = ThreadsOption,
) -> None:
    """Bake an instruction into a LoRA adapter: the model then answers, with no system prompt, as it answers
    with the instruction as its system prompt. Stack it with knowledge adapters (`ask --adapter A --adapter B`).

    Example: loracle bake "Answer in French." --out adapters/french && loracle ask --adapter adapters/french "Hi!"
    """
    from loracle.bake.baker import bake, check_out
    from loracle.bake.config import bake_config

    options = parse_options(option)
    if steps is not None:
        options["steps"] = steps
    config = bake_config(instruction, options)  # bad input is refused before the model loads
    check_out(out)
    lm = load_base(model, threads)
    with err_console.status("baking...") as status:
        report = bake(lm, config, out, progress=lambda line: status.update(f"baking: {line}..."))
    loss = f"loss {report.losses[0]:.3f} -> {report.losses[-1]:.3f}"
    console.print(f"wrote {out} ({report.size_bytes / 1e6:.1f} MB) in {report.seconds:.0f} s, {loss}")
