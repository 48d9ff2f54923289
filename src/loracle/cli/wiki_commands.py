"""The wiki commands: init, ingest, query, lint, status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from loracle.cli.app import EngineOption, ThreadsOption, app, console, err_console, use_engine

if TYPE_CHECKING:
    from loracle.kb import KBPaths
    from loracle.llm import LLM

KBOption = typer.Option(None, "--kb", help="Knowledge base folder (default: $LORACLE_KB or the nearest).")


def _llms(kb: KBPaths, threads: int) -> tuple[LLM, LLM]:
    from loracle.llm.client import writer_and_fast
    from loracle.runtime import configure_threads

    configure_threads(threads)
    return writer_and_fast(kb.config())


@app.command()
def init(folder: Path = typer.Argument(..., help="Folder for the new knowledge base (created if missing).")) -> None:
    """Create a knowledge base: loracle.toml, raw/, wiki/index.md, wiki/log.md, wiki/SCHEMA.md.

    Example: loracle init my-kb
    """
    from loracle.wiki import init_kb

    kb = init_kb(folder)
    console.print(
        f"knowledge base ready in {kb.root} (add sources with `loracle ingest FILE --kb {folder}`)", markup=False
    )


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help="Files or folders (markdown, text, HTML, PDF)."),
    kb: Path | None = KBOption,
    threads: int = ThreadsOption,
    engine: str = EngineOption,
) -> None:
    """Copy sources into raw/ and let the writer model summarise them into linked wiki pages.

    Unchanged sources are skipped; changed ones update their pages; removed ones are logged and flagged.

    Example: loracle ingest notes/ paper.pdf --kb my-kb
    """
    use_engine(engine)
    from loracle.kb import find_kb
    from loracle.wiki import ingest as run_ingest

    paths_kb = find_kb(kb)
    writer, fast = _llms(paths_kb, threads)
    with err_console.status("ingesting...") as spinner:
        report = run_ingest(paths_kb, paths, writer, fast, progress=lambda key: spinner.update(f"ingesting {key}"))
    for result in report.results:
        if result.status == "failed":
            err_console.print(f"[red]failed:[/] {escape(result.error)}", highlight=False, soft_wrap=True)
            continue
        detail = f" -> {result.page}" if result.page else ""
        calls = f" ({result.llm_calls} LLM calls, {result.seconds:.1f} s)" if result.llm_calls else ""
        console.print(f"{result.status}: {result.source}{detail}{calls}", markup=False, highlight=False, soft_wrap=True)
        for note in result.notes:
            console.print(f"  note: {note}", markup=False, highlight=False, soft_wrap=True)
    counts = ", ".join(f"{report.count(s)} {s}" for s in ("added", "updated", "unchanged", "removed", "failed"))
    console.print(counts)
    if report.failed and len(report.failed) == len(report.results):
        from loracle.errors import LoracleError

        raise LoracleError(f"nothing ingested: all {len(report.failed)} sources failed")


@app.command()
def query(
    question: str = typer.Argument(..., help="The question."),
    kb: Path | None = KBOption,
    save: bool = typer.Option(False, "--save", help="File the answer as a wiki page, linked from the index."),
    n: int = typer.Option(4, "-n", help="How many pages to read."),
    threads: int = ThreadsOption,
    engine: str = EngineOption,
) -> None:
    """Answer from the wiki, citing the pages and the raw source lines behind them.

    Example: loracle query "Who founded the observatory?" --kb my-kb --save
    """
    use_engine(engine)
    from loracle.kb import find_kb
    from loracle.wiki import query as run_query

    paths_kb = find_kb(kb)
    writer, _ = _llms(paths_kb, threads)
    answer = run_query(paths_kb, question, writer, n=n, save=save)
    console.print(answer.text, markup=False, highlight=False)
    console.print("\nSources:")
    for cite in answer.citations:
        lines = "; ".join(f"{line} {line.text[:80]!r}" for line in cite.lines)
        where = f"- {cite.title} (wiki/{cite.page})" + (f": {lines}" if lines else "")
        console.print(where, markup=False, highlight=False)
    if answer.saved:
        console.print(f"saved as wiki/{answer.saved}", markup=False)


@app.command()
def lint(
    kb: Path | None = KBOption,
    fix: bool = typer.Option(False, "--fix", help="Repair what has one right answer (links by name, the index)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    no_llm: bool = typer.Option(False, "--no-llm", help="Skip the contradiction check (it asks the LLM)."),
    max_pairs: int = typer.Option(12, "--max-pairs", help="Most candidate contradictions the LLM judges."),
    exit_zero: bool = typer.Option(False, "--exit-zero", help="Exit 0 even when errors are found."),
    threads: int = ThreadsOption,
    engine: str = EngineOption,
) -> None:
    """Check the wiki: broken links, orphans, the index, missing pages, duplicates, contradictions, stale claims.

    Exits 1 when it finds an error (a broken link or heading, a page missing from the index, a duplicate, an
    unsupported page, a contradiction) that --fix did not repair, so it can run in a knowledge base's CI;
    orphans, missing pages and superseded claims are warnings.

    Example: loracle lint --kb my-kb --fix
    """
    use_engine(engine)
    from loracle.kb import find_kb
    from loracle.wiki import lint as run_lint

    paths_kb = find_kb(kb)
    llm = None if no_llm else _llms(paths_kb, threads)[1]
    report = run_lint(paths_kb, llm=llm, fix=fix, max_pairs=max_pairs)
    failed = bool(report.errors) and not exit_zero
    if as_json:
        typer.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
        if failed:
            raise typer.Exit(1)
        return
    for finding in report.findings:
        mark = "[green]fixed[/]" if finding.fixed else f"[yellow]{finding.kind}[/]"
        console.print(f"{mark} {escape(finding.page)}: {escape(finding.message)}", highlight=False, soft_wrap=True)
        for line in finding.evidence[:3]:
            console.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)
    for note in report.notes:
        console.print(f"note: {note}", markup=False)
    counts = ", ".join(f"{v} {k}" for k, v in report.by_kind().items() if v)
    console.print(
        f"{report.pages} pages, {report.links_resolved}/{report.links} links resolve, "
        f"{len(report.flagged_pages())} pages flagged" + (f" ({counts})" if counts else "")
    )
    console.print(f"{len(report.errors)} errors, {len(report.warnings)} warnings")
    if failed:
        raise typer.Exit(1)


@app.command()
def status(kb: Path | None = KBOption, as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Sources, pages, links, and what is stale (new, changed or removed sources not yet ingested).

    Example: loracle status --kb my-kb
    """
    from loracle.kb import find_kb
    from loracle.wiki import wiki_status

    paths_kb = find_kb(kb)
    st = wiki_status(paths_kb)
    if as_json:
        typer.echo(json.dumps(st.to_json(), ensure_ascii=False, indent=2))
        return
    pages = ", ".join(f"{n} {t}" for t, n in sorted(st.pages.items())) or "none"
    console.print(f"knowledge base: {paths_kb.root}", markup=False)
    console.print(f"sources: {st.sources}" + (f" ({st.removed_sources} removed)" if st.removed_sources else ""))
    console.print(f"pages: {sum(st.pages.values())} ({pages})")
    console.print(f"links: {st.links_resolved}/{st.links} resolve")
    for label, items in (
        ("new (not ingested)", st.new_sources),
        ("changed since ingest", st.changed_sources),
        ("removed since ingest", st.missing_sources),
        ("unsupported pages", st.unsupported_pages),
        ("unreadable", st.unreadable),
        ("not in the index", st.unindexed_pages),
    ):
        for item in items:
            console.print(f"{label}: {item}", markup=False, highlight=False, soft_wrap=True)
    if st.new_sources or st.changed_sources or st.missing_sources:
        console.print(f"stale: run `loracle ingest {paths_kb.raw}` to catch up", markup=False, highlight=False)
    elif st.stale:
        console.print("stale: run `loracle lint --fix` to add the missing pages to the index", highlight=False)
    else:
        console.print("up to date")
