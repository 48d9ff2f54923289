"""Commands that talk to the base model directly: ask, chat, doctor, demo."""

from __future__ import annotations

from pathlib import Path

import typer

from loracle.cli.app import (
    MAX_NEW_TOKENS,
    EngineOption,
    ModelOption,
    TemperatureOption,
    ThreadsOption,
    app,
    console,
    load_with_adapters,
    max_tokens_option,
    use_engine,
)
from loracle.errors import LoracleError
from loracle.model.embedded import EMBEDDED_SPEC as EMBEDDED

#: --model where a knowledge base (--kb) has a base model of its own
KBModelOption = typer.Option(
    None, "--model", "-m", help="Base model: 'embedded' (default; with --kb, the knowledge base's), a folder, a .gguf."
)


@app.command()
def ask(
    question: str = typer.Argument(..., help="The question."),
    doc: Path | None = typer.Option(None, "--doc", help="Put this document in context."),
    adapter: list[Path] = typer.Option(
        [], "--adapter", help="A PEFT adapter folder to apply, LoRA or prefix (repeatable)."
    ),
    adapter_weights: str | None = typer.Option(None, "--adapter-weights", help="Comma-separated weights, e.g. 1,0.5"),
    model: str | None = KBModelOption,
    max_tokens: int | None = typer.Option(
        None,
        "--max-tokens",
        min=1,
        max=MAX_NEW_TOKENS,
        help="Most new tokens (default 200; with --kb, its \\[ask] max_new_tokens).",
    ),
    temperature: float = TemperatureOption,
    threads: int = ThreadsOption,
    engine: str = EngineOption,
    learner: str | None = typer.Option(None, "--learner", help="With --load: the learner (default: the checkpoint's)."),
    load: str | None = typer.Option(None, "--load", help="Answer with this learner checkpoint (see `loracle learn`)."),
    kb: Path | None = typer.Option(
        None,
        "--kb",
        help="Answer from this knowledge base's compiled adapters, routed to the question (the base model when "
        "none matches), and name the documents they came from. With --load: the knowledge base whose checkpoints "
        "folder to use.",
    ),
) -> None:
    """Stream an answer from the model, or from a knowledge base's compiled adapters with --kb.

    Example: loracle ask --kb my-kb "Who founded the observatory?"
    """
    use_engine(engine)
    if load:
        from loracle.cli.learn_commands import ask_checkpoint

        return ask_checkpoint(question, load, learner, model or EMBEDDED, threads, kb)
    if kb is not None:
        from loracle.cli.kb_answers import ask_kb

        if doc is not None or adapter:
            raise LoracleError("--kb answers from the knowledge base's own adapters: leave out --doc and --adapter")
        return ask_kb(question, kb, model, max_tokens, temperature, threads)
    from loracle.model.prefix import is_prefix_adapter
    from loracle.sources import read_document

    document = read_document(doc).text if doc else None  # before the model load: a bad --doc fails at once
    prefixes = [folder for folder in adapter if is_prefix_adapter(folder)]  # placed before the prompt, in order
    if prefixes and adapter_weights:
        raise LoracleError(f"--adapter-weights: {prefixes[0]} is a prefix adapter, which takes no weight")
    lm = load_with_adapters(model or EMBEDDED, [a for a in adapter if a not in prefixes], adapter_weights, threads)
    from loracle.model import GenerationConfig, question_messages, stream_chat
    from loracle.model.prefix import join_prefixes, load_prefix_adapter

    prefix = join_prefixes(lm.model, [load_prefix_adapter(lm, folder) for folder in prefixes])
    config = GenerationConfig(max_new_tokens=max_tokens or 200, temperature=temperature)
    for piece in stream_chat(lm, question_messages(question, document), config, prefix):
        console.out(piece, end="", highlight=False)
    console.out("")


@app.command()
def chat(
    doc: Path | None = typer.Option(None, "--doc", help="Start with this document in context."),
    adapter: list[Path] = typer.Option([], "--adapter", help="A PEFT adapter folder to apply (repeatable)."),
    model: str | None = KBModelOption,
    threads: int = ThreadsOption,
    engine: str = EngineOption,
    kb: Path | None = typer.Option(
        None, "--kb", help="Answer each turn from this knowledge base's compiled adapters, routed to the question."
    ),
) -> None:
    """An interactive session: /doc FILE, /adapter DIR, /reset, /quit; with --kb, each question is routed to the
    knowledge base's adapters and the reply names the documents it came from.

    Example: loracle chat --doc notes/observatory.md      or: loracle chat --kb my-kb
    """
    use_engine(engine)
    from loracle.chat_session import ChatSession

    if kb is not None:
        from loracle.cli.kb_answers import open_answerer

        if doc is not None or adapter:
            raise LoracleError("--kb answers from the knowledge base's own adapters: leave out --doc and --adapter")
        ChatSession(model or EMBEDDED, threads, console, answerer=open_answerer(kb, model, threads)).run(None, [])
        return
    ChatSession(model or EMBEDDED, threads, console).run(doc, adapter)


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
    engine: str = EngineOption,
    max_tokens: int = max_tokens_option(40, "Most new tokens per answer."),
    kb: Path | None = typer.Option(
        None, "--kb", help="Build the demo knowledge base here and keep it (default: a temp folder)."
    ),
    learner: str = typer.Option(
        "ttt", "--learner", help="How adapters are compiled: ttt (trained per document) or hypernet (one pass)."
    ),
) -> None:
    """The whole pipeline on the bundled sample: a wiki, adapters, answers closed-book, from the compiled adapters
    and with the document in the prompt, a scored table.

    Example: loracle demo --kb ./demo-kb
    """
    use_engine(engine)
    from loracle.demo import run_demo

    run_demo(console, model, threads, max_tokens, kb, learner)
