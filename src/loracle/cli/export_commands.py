"""`loracle export`: hand a knowledge base's model and adapters to another server (vLLM)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from loracle.cli.adapter_commands import KBOption, ModelSpecOption, kb_store
from loracle.cli.app import ThreadsOption, app, console, err_console, load_base

export_app = typer.Typer(help="Export the base model and adapters for another server.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("vllm")
def export_vllm_command(
    out: Path = typer.Argument(..., help="A new folder to write: base/, adapters/<id>/, serve-vllm.sh."),
    kb: Path | None = KBOption,
    model: str | None = ModelSpecOption,
    name: str = typer.Option("", "--name", help="The base model's name in vLLM's API (default: the model's)."),
    threads: int = ThreadsOption,
) -> None:
    """Export the base model (Hugging Face folder) and the adapters vLLM can load (PEFT folders), with a
    launch script whose --max-lora-rank and LoRA counts come from the store.

    Example: loracle export vllm --kb my-kb my-kb-vllm && my-kb-vllm/serve-vllm.sh
    """
    from loracle.adapters.vllm_export import LAUNCH_SCRIPT, export_vllm
    from loracle.errors import LoracleError
    from loracle.kb import find_kb

    store = kb_store(kb)
    if out.exists():  # before the model loads
        raise LoracleError(f"{out}: already exists; export into a new folder")
    lm = load_base(model or find_kb(kb).config().model.base, threads)
    result = export_vllm(lm, store, out, name)
    for line in result.skipped:
        err_console.print(f"[yellow]skipped[/] {escape(line)}", highlight=False, soft_wrap=True, markup=True)
    console.print(
        f"exported the base model and {len(result.adapters)} adapters -> {result.folder}; "
        f"serve with {result.folder / LAUNCH_SCRIPT}",
        markup=False,
        highlight=False,
    )
