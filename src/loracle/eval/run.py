"""One eval run from inputs to outputs: what `loracle eval`, the demo and the benchmark call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from loracle.eval.general import bundled_general
from loracle.eval.harness import EvalResult, EvalSettings, Progress, run_eval
from loracle.eval.inputs import EvalInputs
from loracle.eval.report import write_json, write_latest, write_plot
from loracle.learners import create_learner, learner_config
from loracle.learners.base import Learner
from loracle.model import LoadedModel


def evaluate(
    lm: LoadedModel,
    inputs: EvalInputs,
    learners: Sequence[str],
    options: Mapping[str, Mapping[str, Any]] | None = None,
    settings: EvalSettings | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """Run floor, ceiling and `learners` (built by the registry with `options[name]`) on `inputs`."""
    options = options or {}
    configs = {name: learner_config(name, options.get(name)) for name in learners}  # refused before any run

    def factory(name: str) -> Learner:
        return create_learner(name, lm, configs[name])

    learned = {doc.text for doc in inputs.docs.values()}
    result = run_eval(
        lm, inputs.docs, inputs.items, learners, factory, bundled_general(learned), settings, progress=progress
    )
    result.settings.update(
        {
            "inputs": inputs.notes,
            "options": {k: dict(v) for k, v in options.items()},
            "configs": {name: config.model_dump() for name, config in configs.items()},
        }
    )
    return result


def write_outputs(
    result: EvalResult, json_path: Path | None = None, plot_path: Path | None = None, kb_state: Path | None = None
) -> list[Path]:
    """Write the JSON and PNG asked for, and the knowledge base's latest copy; return what was written."""
    written: list[Path] = []
    if json_path is not None:
        write_json(result, json_path)
        written.append(json_path)
    if plot_path is not None:
        write_plot(result, plot_path)
        written.append(plot_path)
    if kb_state is not None:
        written.append(write_latest(result, kb_state))
    return written


def run_small_eval(
    lm: LoadedModel,
    console: Console,
    learners: Sequence[str] = ("context", "kstore"),
    max_new_tokens: int = 32,
    forgetting: bool = False,
    max_questions: int | None = None,
) -> EvalResult:
    """A small eval for the demo: the bundled sample document and its questions, floor, ceiling and
    `learners`, printed as the results table (about a minute per learner on two CPU cores)."""
    from loracle.eval.general import data_file
    from loracle.eval.inputs import load_inputs
    from loracle.eval.report import results_table

    folder = data_file("sample")
    inputs = load_inputs(folder, folder / "questions.jsonl", max_questions=max_questions)
    settings = EvalSettings(
        max_new_tokens=max_new_tokens, general=forgetting, general_knowledge_max=8, general_reading_max=4
    )
    with console.status("Evaluating learners on the sample...") as status:
        result = evaluate(lm, inputs, learners, settings=settings, progress=lambda m: status.update(m))
    console.print(results_table(result))
    return result
