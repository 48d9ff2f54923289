"""`loracle learn`: let a learner learn documents and save it as a named checkpoint; `loracle learners`: what
each learner's options are."""

from __future__ import annotations

from pathlib import Path

import typer

from loracle.cli.adapter_commands import LearnerOptions, parse_options
from loracle.cli.app import EngineOption, ModelOption, ThreadsOption, app, console, err_console, load_base, use_engine


@app.command()
def learn(
    docs: list[Path] = typer.Argument(..., help="Documents or folders to learn."),
    learner: str = typer.Option("context", "--learner", "-l", help="context, ttt, kstore, playbook or hypernet."),
    save: str | None = typer.Option(
        None, "--save", help="Checkpoint name (kept in <kb>/.loracle/checkpoints or your data folder) or a path."
    ),
    kb: Path | None = typer.Option(None, "--kb", help="Knowledge base whose checkpoints folder to use."),
    option: list[str] = LearnerOptions,
    model: str = ModelOption,
    threads: int = ThreadsOption,
    engine: str = EngineOption,
) -> None:
    """Learn documents with one learner and save what it learned (with its options, which `ask --load` uses).

    Example: loracle learn notes/ --learner ttt --save my-notes -o steps_per_doc=40   (options: loracle learners)
    """
    use_engine(engine)
    from loracle.kb import find_kb
    from loracle.learners import learner_config
    from loracle.learners.session import learn_sources, save_target

    kb_root = find_kb(kb).root if kb else None
    target = save_target(save, kb_root) if save is not None else None  # refused before minutes of learning
    config = learner_config(learner, parse_options(option))  # a bad name or option is refused before the model loads
    lm = load_base(model, threads)
    with err_console.status(f"Learning with {learner}..."):
        outcome = learn_sources(
            lm, learner, docs, target, options=config, on_error=lambda line: err_console.print(f"skipped: {line}")
        )
    report = outcome.report
    console.print(
        f"{report.learner}: learned {report.documents} document(s), {report.tokens} tokens, in {report.seconds:.1f} s"
    )
    if outcome.saved_to:
        console.print(f"saved to {outcome.saved_to}")


def ask_checkpoint(
    question: str, name: str, learner: str | None, model: str, threads: int, kb: Path | None = None
) -> None:
    """`loracle ask --load NAME [--kb KB]`: answer with a saved learner and list its citations."""
    from loracle.kb import find_kb
    from loracle.learners.session import answer_from_checkpoint

    kb_root = find_kb(kb).root if kb else None  # a bad --kb is refused before the model loads
    lm = load_base(model, threads)
    answer = answer_from_checkpoint(lm, name, question, learner=learner, kb_root=kb_root)
    console.out(answer.text, highlight=False)
    for citation in answer.citations:
        where = f", line {citation.line}" if citation.line else ""
        console.print(f"[dim]- {citation.title} ({citation.doc_id}{where})[/]", highlight=False)


@app.command("learners")
def learners_command(
    name: str | None = typer.Argument(None, help="One learner (default: all of them)."),
) -> None:
    """List the learners and each one's options (set with -o KEY=VALUE on learn, compile and eval), with their
    defaults and what they do; no model is loaded.

    Example: loracle learners ttt
    """
    from rich.table import Table

    from loracle.learners import LEARNER_NAMES, describe_options

    for learner in [name] if name else LEARNER_NAMES:
        options = describe_options(learner)  # an unknown name is refused in one line
        table = Table("option", "default", "what it does", title=learner, title_justify="left", box=None)
        for key, default, description in options:
            table.add_row(key, default, description)
        console.print(table)
