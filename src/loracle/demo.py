"""`loracle demo`: the main job on a bundled sample, growing as loracle's capabilities do."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table

from loracle.eval.qa import load_qa
from loracle.eval.scoring import is_correct
from loracle.model import GenerationConfig, generate_chat, load_model, question_messages
from loracle.runtime import configure_threads
from loracle.sources import read_document


def sample_dir() -> Path:
    """The bundled sample documents and their questions."""
    return Path(str(resources.files("loracle") / "data" / "sample"))


def run_demo(console: Console, model_spec: str, threads: int, max_tokens: int) -> None:
    configure_threads(threads)
    folder = sample_dir()
    questions = load_qa(folder / "questions.jsonl")
    with console.status(f"Loading {model_spec} model (the first time converts it: ~30 s)..."):
        lm = load_model(model_spec)
    console.print(f"[bold]Model:[/] {lm.name}   [bold]Sample:[/] {folder}")
    config = GenerationConfig(max_new_tokens=max_tokens)
    table = Table(title="Closed-book vs document in context", show_lines=True)
    table.add_column("Question", ratio=3)
    table.add_column("Closed-book", ratio=3)
    table.add_column("With the document", ratio=3)
    scores = {"closed": 0, "context": 0}
    for item in questions:
        doc = read_document(folder / item.docs[0])
        with console.status(f"Answering: {item.question}"):
            closed = generate_chat(lm, question_messages(item.question), config)
            in_context = generate_chat(lm, question_messages(item.question, doc.text), config)
        marks = []
        for key, reply in (("closed", closed), ("context", in_context)):
            ok = is_correct(reply, item.answers)
            scores[key] += ok
            marks.append(f"{'[green]✓[/]' if ok else '[red]✗[/]'} {reply}")
        table.add_row(f"{item.question}\n[dim]expected: {' / '.join(item.answers)}[/]", *marks)
    console.print(table)
    n = len(questions)
    console.print(
        f"Accuracy: closed-book {scores['closed']}/{n}, with the document in context {scores['context']}/{n}."
    )
