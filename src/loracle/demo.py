"""`loracle demo`: the whole pipeline on a bundled sample, on the embedded model.

ingest -> wiki -> adapters (a progress bar per document) -> a small eval of the learners with floor and
ceiling -> every question answered closed-book, from the compiled adapters (routed and applied by
loracle.asking, the path `ask --kb` and the server's model "kb" take) and with the document in the prompt,
each scored.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from loracle.eval.qa import QAItem, load_qa
from loracle.eval.scoring import is_correct
from loracle.model import GenerationConfig, LoadedModel, generate_chat, load_model, question_messages
from loracle.runtime import configure_threads
from loracle.sources import read_document

CLOSED, ADAPTERS, IN_PROMPT = "closed-book", "from the compiled adapters", "document in the prompt"
COLUMNS = (CLOSED, ADAPTERS, IN_PROMPT)


def sample_dir() -> Path:
    """The bundled sample documents and their questions."""
    return Path(str(resources.files("loracle") / "data" / "sample"))


def run_demo(
    console: Console,
    model_spec: str,
    threads: int,
    max_tokens: int,
    kb_dir: Path | None = None,
    learner: str = "ttt",
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
    _compile_adapters(console, lm, kb_root, learner)
    docs = {name: read_document(folder / name).text for item in questions for name in item.docs}
    with console.status("Answering closed-book, from the compiled adapters, and with the document in the prompt..."):
        answers, sources = answer_three_ways(lm, kb_root, questions, docs, max_tokens)
    console.rule("3. Learners on the sample, with floor and ceiling")
    run_small_eval(lm, console, learners=("context",), max_new_tokens=max_tokens)
    _print_answers(console, questions, answers, sources, learner)


def answer_three_ways(
    lm: LoadedModel, kb_root: Path, questions: Sequence[QAItem], docs: Mapping[str, str], max_tokens: int
) -> tuple[dict[str, list[str]], list[str]]:
    """Each question's answer closed-book, from the knowledge base's compiled adapters (what `ask --kb` answers),
    and with its documents in the prompt; and, per question, the line naming what the adapters' answer came
    from. The model is left as it was given (the adapters are taken out again)."""
    from loracle.asking import KnowledgeBaseAnswerer

    config = GenerationConfig(max_new_tokens=max_tokens)
    answers: dict[str, list[str]] = {column: [] for column in COLUMNS}
    sources = []
    for item in questions:
        context = "\n\n".join(docs[name] for name in item.docs)
        answers[CLOSED].append(generate_chat(lm, question_messages(item.question), config))
        answers[IN_PROMPT].append(generate_chat(lm, question_messages(item.question, context), config))
    with KnowledgeBaseAnswerer(lm, kb_root) as answerer:
        for item in questions:
            answer = answerer.ask(item.question, config)
            answers[ADAPTERS].append(answer.text)
            sources.append(answer.plan.sources_line())
    return answers, sources


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


def _compile_adapters(console: Console, lm: LoadedModel, kb_root: Path, learner: str) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from loracle.knowledge_base import KnowledgeBase
    from loracle.pipeline import CompileEvent

    console.rule(f"2. Each source compiled into a LoRA adapter ({learner})")
    kb = KnowledgeBase(kb_root, learner=learner, source="raw", lm=lm)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(f"compiling with {learner}", total=None)

        def progress(step: CompileEvent) -> None:
            bar.update(task, description=f"{step.event} {step.name}", completed=step.done, total=step.total)

        summary = kb.compile_all(progress=progress)
    for failure in summary.failed:
        console.print(f"[red]failed:[/] {escape(failure.message)}")
    for manifest in kb.adapters():
        path = kb.adapter_path(manifest.id)
        seconds = summary.compile_seconds.get(manifest.id)
        timing = f" in {seconds:.1f} s" if seconds is not None else ""
        console.print(f"adapter {manifest.id}: {manifest.size_bytes / 1e6:.2f} MB{timing} -> {path}", highlight=False)


def _print_answers(
    console: Console, questions: list[QAItem], answers: dict[str, list[str]], sources: list[str], learner: str
) -> None:
    console.rule("4. Answers, scored")
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
            cell = f"{'[green]✓[/]' if ok else '[red]✗[/]'} {escape(reply)}"
            if column == ADAPTERS:
                cell += f"\n[dim]{escape(sources[index])}[/]"
            cells.append(cell)
        table.add_row(f"{escape(item.question)}\n[dim]expected: {escape(' / '.join(item.answers))}[/]", *cells)
    console.print(table)
    n = len(questions)
    console.print(
        "Accuracy: " + ", ".join(f"{column} {scores[column]}/{n}" for column in COLUMNS) + f" ({learner} adapters)."
    )
