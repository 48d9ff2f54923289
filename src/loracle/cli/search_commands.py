"""`loracle search`: hybrid search over the knowledge base's wiki pages."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer
from rich.markup import escape

from loracle.cli.app import app, console, err_console


@app.command()
def search(
    terms: str = typer.Argument(..., help="What to look for (words, a phrase, or a question)."),
    kb: Path | None = typer.Option(None, "--kb", help="Knowledge base folder (default: $LORACLE_KB or the nearest)."),
    n: int = typer.Option(10, "-n", "--limit", min=1, max=1000, help="How many results."),
    mode: str = typer.Option("hybrid", "--mode", help="hybrid (BM25 + vectors), bm25 or vector."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Search the wiki: titles, aliases, tags, headings and text (BM25) plus meaning (all-MiniLM-L6-v2).

    The index (.loracle/search.db) is brought up to date with wiki/ first; only changed pages are re-read.

    Example: loracle search "who founded the observatory" --kb my-kb -n 5
    """
    from loracle.kb import find_kb
    from loracle.search.kb_search import search_kb

    result = search_kb(find_kb(kb), terms, n=n, mode=mode)
    if as_json:
        payload = {
            "query": result.query,
            "mode": result.mode,
            "results": [dataclasses.asdict(hit) for hit in result.hits],
            "sync": {
                "added": len(result.sync.added),
                "updated": len(result.sync.updated),
                "removed": len(result.sync.removed),
                "unchanged": result.sync.unchanged,
                "rebuilt": result.sync.rebuilt,
                "errors": result.sync.errors,
            },
        }
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    for error in result.sync.errors:
        err_console.print(f"[yellow]skipped:[/] {escape(error)}", highlight=False, soft_wrap=True)
    if not result.hits:
        console.print(f"No pages match {terms!r}.", markup=False)
        return
    from rich.table import Table

    table = Table(title=f"{len(result.hits)} results for {terms!r} ({result.mode})", show_lines=False)
    for column in ("#", "page", "score", "bm25", "vector", "snippet"):
        table.add_column(column, overflow="fold", ratio=4 if column == "snippet" else None)
    for rank, hit in enumerate(result.hits, start=1):
        table.add_row(
            str(rank),
            f"{hit.title}\n[dim]{hit.path}[/]",
            f"{hit.score:.3f}",
            str(hit.bm25_rank or "-"),
            str(hit.vector_rank or "-"),
            hit.snippet,
        )
    console.print(table)
