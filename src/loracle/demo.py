"""`loracle demo`: the whole pipeline on a bundled sample, on the embedded model.

ingest -> wiki -> adapters -> answers closed-book, with the document's adapter, and with the document
in context -> a scored table -> a small eval of the learners with floor and ceiling.
"""

from __future__ import annotations

import tempfile
import time
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table

from loracle.eval.qa import QAItem, load_qa
from loracle.eval.scoring import is_correct
from loracle.model import GenerationConfig, LoadedModel, apply_adapters, generate_chat, load_model, question_messages
from loracle.runtime import configure_threads
from loracle.sources import read_document

COLUMNS = ("closed-book", "with its adapter", "document in context")


def sample_dir() -> Path:
    """The bundled sample documents and their questions."""
    return Path(str(resources.files("loracle") / "data" / "sample"))


def run_demo(
    console: Console,
    model_spec: str,
    threads: int,
    max_tokens: int,
    kb_dir: Path | None = None,
    learner: str = "hypernet",
) -> None:
    configure_threads(threads)
    folder = sample_dir()
    questions = load_qa(folder / "questions.jsonl")
    with console.status(f"Loading {model_spec} model (the first time converts it: ~30 s)..."):
        lm = load_model(model_spec)
    console.print(f"[bold]Model:[/] {lm.name}   [bold]Sample:[/] {folder}")
    if kb_dir is None:
        with tempfile.TemporaryDirectory(prefix="loracle-demo-") as tmp:
            _pipeline(console, lm, folder, questions, Path(tmp) / "kb", max_tokens, learner)
    else:
        _pipeline(console, lm, folder, questions, kb_dir, max_tokens, learner)


def _pipeline(
    console: Console,
    lm: LoadedModel,
    folder: Path,
    questions: list[QAItem],
    kb_dir: Path,
    max_tokens: int,
    learner: str,
) -> None:
    from loracle.eval.run import run_small_eval

    kb_root = _build_wiki(console, lm, folder, kb_dir)
    adapters = _compile_adapters(console, lm, kb_root, learner)
    config = GenerationConfig(max_new_tokens=max_tokens)
    docs = {name: read_document(folder / name) for item in questions for name in item.docs}
    answers: dict[str, list[str]] = {c: [] for c in COLUMNS}
    with console.status("Answering closed-book and with the document in context..."):
        for item in questions:
            context = "\n\n".join(docs[name].text for name in item.docs)
            answers["closed-book"].append(generate_chat(lm, question_messages(item.question), config))
            answers["document in context"].append(generate_chat(lm, question_messages(item.question, context), config))
    console.rule("Learners on the sample, with floor and ceiling")
    run_small_eval(lm, console, learners=("context",), max_new_tokens=max_tokens)
    with console.status(f"Answering with the {learner} adapters applied..."):
        adapted = apply_adapters(lm, [adapters[doc_id] for doc_id in sorted({d.id for d in docs.values()})], merge=True)
        for item in questions:
            answers["with its adapter"].append(generate_chat(adapted, question_messages(item.question), config))
    _print_answers(console, questions, answers, learner)


def _build_wiki(console: Console, lm: LoadedModel, folder: Path, kb_dir: Path) -> Path:
    from loracle.llm.client import make_llm
    from loracle.wiki import ingest
    from loracle.wiki.layout import init_kb

    kb = init_kb(kb_dir)
    writer = make_llm(kb.config(), "writer", lm)
    sources = sorted(folder.glob("*.md"))
    console.rule("1. The model writes a wiki of the sources")
    started = time.perf_counter()
    with console.status("Ingesting the sample into the wiki (the writer LLM reads each source)..."):
        report = ingest(kb, sources, writer)
    for result in report.results:
        line = f"{result.status:>9}  {result.source}"
        if result.pages:
            line += f"  -> {len(result.pages)} pages: {', '.join(result.pages[:6])}"
        if result.error:
            line += f"  ({result.error})"
        console.print(line, highlight=False)
    console.print(
        f"{writer.calls} LLM calls in {time.perf_counter() - started:.1f} s. Wiki: {kb.wiki} "
        f"(index.md, log.md, SCHEMA.md; open it in Obsidian)"
    )
    return kb.root


def _compile_adapters(console: Console, lm: LoadedModel, kb_root: Path, learner: str) -> dict[str, Path]:
    from loracle.knowledge_base import KnowledgeBase

    console.rule(f"2. Each source compiled into a LoRA adapter ({learner})")
    kb = KnowledgeBase(kb_root, learner=learner, source="raw", lm=lm)
    with console.status("Compiling adapters..."):
        summary = kb.compile_all()
    for failure in summary.failed:
        console.print(f"[red]failed:[/] {failure}")
    by_id: dict[str, Path] = {}
    for manifest in kb.adapters():
        path = kb.adapter_path(manifest.id)
        by_id[manifest.id] = path
        seconds = summary.compile_seconds.get(manifest.id)
        timing = f" in {seconds:.2f} s" if seconds is not None else ""
        console.print(f"adapter {manifest.id}: {manifest.size_bytes / 1e6:.2f} MB{timing} -> {path}", highlight=False)
    return by_id


def _print_answers(console: Console, questions: list[QAItem], answers: dict[str, list[str]], learner: str) -> None:
    console.rule("3. Answers, scored")
    table = Table(show_lines=True)
    table.add_column("Question", ratio=3)
    for column in COLUMNS:
        table.add_column(column.capitalize(), ratio=3)
    scores = dict.fromkeys(COLUMNS, 0)
    for index, item in enumerate(questions):
        cells = []
        for column in COLUMNS:
            reply = answers[column][index]
            ok = is_correct(reply, item.answers)
            scores[column] += ok
            cells.append(f"{'[green]✓[/]' if ok else '[red]✗[/]'} {reply}")
        table.add_row(f"{item.question}\n[dim]expected: {' / '.join(item.answers)}[/]", *cells)
    console.print(table)
    n = len(questions)
    console.print(
        "Accuracy: " + ", ".join(f"{column} {scores[column]}/{n}" for column in COLUMNS) + f" ({learner} adapter)."
    )
