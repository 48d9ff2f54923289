"""Commands that talk to the base model directly: ask, chat, doctor, demo."""

from __future__ import annotations

from pathlib import Path

import typer

from loracle.cli.app import (
    ModelOption,
    TemperatureOption,
    ThreadsOption,
    app,
    console,
    load_with_adapters,
    max_tokens_option,
)


@app.command()
def ask(
    question: str = typer.Argument(..., help="The question."),
    doc: Path | None = typer.Option(None, "--doc", help="Put this document in context."),
    adapter: list[Path] = typer.Option([], "--adapter", help="A PEFT adapter folder to apply (repeatable)."),
    adapter_weights: str | None = typer.Option(None, "--adapter-weights", help="Comma-separated weights, e.g. 1,0.5"),
    model: str = ModelOption,
    max_tokens: int = max_tokens_option(200, "Most new tokens to generate."),
    temperature: float = TemperatureOption,
    threads: int = ThreadsOption,
    learner: str | None = typer.Option(None, "--learner", help="With --load: the learner (default: the checkpoint's)."),
    load: str | None = typer.Option(None, "--load", help="Answer with this learner checkpoint (see `loracle learn`)."),
    kb: Path | None = typer.Option(
        None, "--kb", help="With --load: the knowledge base whose checkpoints folder to use."
    ),
) -> None:
    """Stream an answer from the model.

    Example: loracle ask "Who founded the observatory?" --doc notes/observatory.md
    """
    if load:
        from loracle.cli.learn_commands import ask_checkpoint

        return ask_checkpoint(question, load, learner, model, threads, kb)
    from loracle.sources import read_document

    document = read_document(doc).text if doc else None  # before the model load: a bad --doc fails at once
    lm = load_with_adapters(model, adapter, adapter_weights, threads)
    from loracle.model import GenerationConfig, question_messages, stream_chat

    config = GenerationConfig(max_new_tokens=max_tokens, temperature=temperature)
    for piece in stream_chat(lm, question_messages(question, document), config):
        console.out(piece, end="", highlight=False)
    console.out("")


@app.command()
def chat(
    doc: Path | None = typer.Option(None, "--doc", help="Start with this document in context."),
    adapter: list[Path] = typer.Option([], "--adapter", help="A PEFT adapter folder to apply (repeatable)."),
    model: str = ModelOption,
    threads: int = ThreadsOption,
) -> None:
    """An interactive session: /doc FILE, /adapter DIR, /reset, /quit.

    Example: loracle chat --doc notes/observatory.md
    """
    from loracle.chat_session import ChatSession

    ChatSession(model, threads, console).run(doc, adapter)


@app.command()
def doctor(model: str = ModelOption) -> None:
    """Show the model, cache location, torch version, device, threads and what is installed.

    Example: loracle doctor
    """
    from loracle.doctor import doctor_report

    console.print(doctor_report(model))


@app.command()
def demo(
    model: str = ModelOption,
    threads: int = ThreadsOption,
    max_tokens: int = max_tokens_option(40, "Most new tokens per answer."),
    kb: Path | None = typer.Option(
        None, "--kb", help="Build the demo knowledge base here and keep it (default: a temp folder)."
    ),
    learner: str = typer.Option("hypernet", "--learner", help="How adapters are compiled: hypernet or ttt."),
) -> None:
    """The whole pipeline on the bundled sample: a wiki, adapters, answers with and without them, a scored table.

    Example: loracle demo --kb ./demo-kb
    """
    from loracle.demo import run_demo

    run_demo(console, model, threads, max_tokens, kb, learner)
