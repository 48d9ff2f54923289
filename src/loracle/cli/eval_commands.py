"""`loracle eval` (measure learners against the floor and the in-context ceiling), `loracle eval-report` (show a
saved result again) and `loracle playbook show`."""

from __future__ import annotations

from pathlib import Path

import typer

from loracle.cli.adapter_commands import parse_options as parse_pairs
from loracle.cli.app import EngineOption, ModelOption, ThreadsOption, app, console, err_console, load_base, use_engine
from loracle.errors import LoracleError

playbook_app = typer.Typer(help="The strategy playbook the `playbook` learner grows.", no_args_is_help=True)
app.add_typer(playbook_app, name="playbook")


def parse_options(values: list[str]) -> dict[str, dict[str, object]]:
    """`learner.key=value` pairs (value read as JSON when it parses, else as a string) grouped by learner."""
    options: dict[str, dict[str, object]] = {}
    for key, parsed in parse_pairs(values).items():
        learner, dot, name = key.partition(".")
        if not dot or not learner or not name:
            raise LoracleError(f"--option {key!r}: expected learner.key=value, e.g. ttt.steps_per_doc=40")
        options.setdefault(learner, {})[name] = parsed
    return options


@app.command("eval")
def eval_command(
    docs: Path | None = typer.Option(None, "--docs", help="Folder of .md/.txt documents the questions are about."),
    qa: Path | None = typer.Option(
        None, "--qa", help='Questions, one JSON a line: {"doc": "a.md", "q": ..., "a": [...]}'
    ),
    squad: Path | None = typer.Option(
        None, "--squad", help="A SQuAD-format JSON file: learn its paragraphs, ask them."
    ),
    max_questions: int | None = typer.Option(
        None,
        "--max-questions",
        min=1,
        help="Cap on questions per source (QA file, SQuAD file), spread over documents.",
    ),
    learners: str = typer.Option("context,kstore", "--learners", help="Comma-separated learners to measure."),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="Learner option learner.key=value (repeatable); `loracle learners` lists them."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the full result (every answer) as JSON."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a bar chart PNG."),
    max_new_tokens: int = typer.Option(48, "--max-new-tokens", min=1, help="Answer length for the references."),
    forgetting: bool = typer.Option(
        True, "--forgetting/--no-forgetting", help="Measure forgetting on the general set."
    ),
    kb: Path | None = typer.Option(None, "--kb", help="Knowledge base whose .loracle/eval/latest.* to update."),
    model: str = ModelOption,
    threads: int = ThreadsOption,
    engine: str = EngineOption,
) -> None:
    """Measure learners on documents and questions, against the base model with no document (floor) and
    with the right document in context (ceiling).

    Example: loracle eval --docs docs/ --qa docs/qa.jsonl --learners context,ttt,kstore --json out.json --plot out.png
    """
    use_engine(engine)
    from loracle.eval.harness import EvalSettings
    from loracle.eval.inputs import load_inputs
    from loracle.eval.report import results_table
    from loracle.eval.run import evaluate, write_outputs
    from loracle.kb import find_kb
    from loracle.learners import LEARNER_NAMES, learner_config

    names = [n.strip() for n in learners.split(",") if n.strip()]
    unknown = [n for n in names if n not in LEARNER_NAMES]
    if unknown:
        raise LoracleError(f"--learners: unknown {', '.join(unknown)} (known: {', '.join(LEARNER_NAMES)})")
    options = parse_options(option)
    for name, given in options.items():  # refused before the model loads
        if name not in names:
            raise LoracleError(f"--option {name}.*: {name!r} is not among --learners ({', '.join(names)})")
        learner_config(name, given)
    inputs = load_inputs(docs, qa, squad, max_questions)
    for warning in inputs.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    try:
        kb_paths = find_kb(kb)
    except LoracleError:
        if kb is not None:
            raise
        kb_paths = None
    lm = load_base(model, threads)
    with err_console.status("Evaluating...") as status:
        result = evaluate(
            lm,
            inputs,
            names,
            options,
            EvalSettings(max_new_tokens=max_new_tokens, general=forgetting),
            progress=lambda message: status.update(message),
        )
    console.print(results_table(result))
    written = write_outputs(result, json_out, plot, kb_paths.state if kb_paths else None)
    for path in written:
        err_console.print(f"wrote {path}")


@app.command("eval-report")
def eval_report(
    result: Path = typer.Argument(..., help="A result written by `loracle eval --json`."),
    plot: Path | None = typer.Option(None, "--plot", help="Also draw its bar chart PNG here."),
) -> None:
    """Show a saved eval result as the table `loracle eval` printed, and redraw its chart; no model is loaded.

    Example: loracle eval-report out.json --plot out.png
    """
    from loracle.eval.report import read_result, results_table
    from loracle.eval.run import write_outputs

    saved = read_result(result)
    console.print(results_table(saved))
    for path in write_outputs(saved, plot_path=plot):
        err_console.print(f"wrote {path}")


@playbook_app.command("show")
def playbook_show(
    kb: Path | None = typer.Option(None, "--kb", help="Knowledge base (default: found from the working folder)."),
    load: str | None = typer.Option(
        None, "--load", help="A checkpoint `loracle learn --learner playbook --save NAME` wrote (a name or a path)."
    ),
    path: Path | None = typer.Option(None, "--path", help="A playbook JSON file to show instead."),
) -> None:
    """Show the playbook of strategies the `playbook` learner grew: a saved checkpoint's, a file's, or the one a
    knowledge base keeps (<kb>/.loracle/playbook.json).

    Example: loracle learn notes/ --learner playbook --save notes-pb && loracle playbook show --load notes-pb
    """
    from loracle.kb import find_kb
    from loracle.learners.playbook.book import Playbook, playbook_path, playbook_table

    if load is not None:
        from loracle.learners.playbook.learner import saved_playbook
        from loracle.learners.session import checkpoint_path

        folder = checkpoint_path(load, find_kb(kb).root if kb else None)
        console.print(playbook_table(saved_playbook(folder), str(folder)))
        return
    target = path if path is not None else playbook_path(find_kb(kb).state)
    if not target.exists():
        raise LoracleError(
            f"{target}: no playbook there; grow one with `loracle learn DOCS --learner playbook --save NAME` "
            "and show it with `loracle playbook show --load NAME`"
        )
    console.print(playbook_table(Playbook.read(target), str(target)))
