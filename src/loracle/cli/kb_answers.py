"""`ask --kb` and `chat --kb`: questions answered from a knowledge base's compiled adapters (loracle.asking)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from loracle.cli.app import console, err_console, load_base

if TYPE_CHECKING:
    from loracle.asking import KnowledgeBaseAnswerer


def open_answerer(kb: Path | None, model: str | None, threads: int) -> KnowledgeBaseAnswerer:
    """The knowledge base's answerer on its base model (or `model`). A knowledge base without adapters is refused
    before the model loads; one whose adapters all belong to another base model, right after."""
    from loracle.asking import KnowledgeBaseAnswerer, check_has_adapters
    from loracle.kb import find_kb

    paths = find_kb(kb)
    config = paths.config()
    check_has_adapters(paths)
    lm = load_base(model or config.model.base, threads or config.model.threads)
    answerer = KnowledgeBaseAnswerer(lm, paths, config=config.ask)
    answerer.check_ready()
    return answerer


def warn(line: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)


def ask_kb(question: str, kb: Path | None, model: str | None, max_tokens: int | None, temperature: float,
           threads: int) -> None:  # fmt: skip
    """Stream the routed answer, then the line naming the documents it came from; warnings on stderr."""
    from loracle.model import GenerationConfig

    answerer = open_answerer(kb, model, threads)
    config = GenerationConfig(max_new_tokens=max_tokens or answerer.config.max_new_tokens, temperature=temperature)
    stream = answerer.stream(question, config)
    for line in stream.plan.warnings:
        warn(line)
    for piece in stream:
        console.out(piece, end="", highlight=False)
    console.out("")
    console.print(stream.plan.sources_line(), markup=False, highlight=False)
