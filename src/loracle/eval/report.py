"""The eval result as a rich table, a JSON file and a bar chart; plus the copy a knowledge base's server shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich import box
from rich.table import Table

from loracle.atomic import write_bytes_atomic, write_text_atomic
from loracle.errors import LoracleError, validation_problem
from loracle.eval.harness import EvalResult, RunResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LATEST_JSON = "latest.json"
LATEST_PNG = "latest.png"
#: the forgetting ratio the ttt learner is to stay under (its target; the other learners have none), drawn as a line
FORGETTING_TARGET = 0.05
REFERENCE_COLOR, LEARNER_COLOR, F1_COLOR = "#9e9e9e", "#1f77b4", "#ff7f0e"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _size(value: int | None) -> str:
    if value is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(value)


def relative_to_ceiling(run: RunResult, result: EvalResult) -> float | None:
    ceiling = result.run("ceiling").accuracy
    if run.accuracy is None or not ceiling:
        return None
    return run.accuracy / ceiling


def results_caption(result: EvalResult) -> str:
    """What the references are, and how far each learner's share of the ceiling can be trusted."""
    caption = "floor: base model, no document; ceiling: base model with the right document(s) in context"
    spans = [
        f"{run.name} {_pct(span[0])}–{_pct(span[1])}"
        for run in result.runs
        if run.kind == "learner" and (span := run.ceiling_interval) is not None
    ]
    if spans:
        caption += "\nof ceiling, 95% interval over the questions (paired bootstrap): " + ", ".join(spans)
    return caption


def results_table(result: EvalResult) -> Table:
    table = Table(
        title=f"loracle eval — {result.model}, {len(result.documents)} documents, {result.questions} questions",
        caption=results_caption(result),
        box=box.SIMPLE_HEAD,  # no vertical rules: the nine columns fit an 80-column terminal unwrapped
        padding=0,  # the box's blank vertical rule is the gap between columns
    )
    for header, justify in (
        ("learner", "left"),
        ("accuracy", "right"),
        ("of\nceiling", "right"),
        ("F1", "right"),
        ("learn\ns/doc", "right"),
        ("answer\ns/q", "right"),
        ("on disk", "right"),
        ("general\nbefore→after", "right"),
        ("forgetting", "right"),
    ):
        table.add_column(header, justify=justify, no_wrap=header == "learner")  # type: ignore[arg-type]
    for run in result.runs:
        name = f"[dim]{run.name}[/]" if run.kind == "reference" else f"[bold]{run.name}[/]"
        if run.error and run.accuracy is None:
            table.add_row(name, f"[red]failed: {run.error}[/]", *[""] * 7)
            continue
        general = f"{_pct(run.general_before)}→{_pct(run.general_after)}" if run.general_after is not None else "—"
        table.add_row(
            name + (" [red]![/]" if run.error else ""),
            f"{_pct(run.accuracy)} {run.correct}/{run.total}",
            _pct(relative_to_ceiling(run, result)),
            _num(run.f1, ".2f"),
            _num(run.learn_seconds_per_doc, ".1f"),
            _num(run.answer_seconds_per_question, ".2f"),
            _size(run.bytes_on_disk),
            general,
            _num(run.forgetting_ratio, ".3f"),
        )
    return table


def write_json(result: EvalResult, path: Path) -> None:
    write_text_atomic(path, json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")


def read_result(path: Path) -> EvalResult:
    """An eval result written by `write_json` (`loracle eval --json`), read back whole; a one-line error naming
    the file when it is missing, not JSON, or not an eval result."""
    from pydantic import TypeAdapter, ValidationError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LoracleError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LoracleError(f"{path}: not a JSON file ({exc})") from exc
    try:
        return TypeAdapter(EvalResult).validate_python(data)
    except ValidationError as exc:
        raise LoracleError(f"{path}: not a loracle eval result ({validation_problem(exc, 'top level')})") from exc


def write_plot(result: EvalResult, path: Path) -> None:
    """Accuracy and F1 per learner (references shaded), and the forgetting ratio, as one PNG."""
    import io

    import matplotlib.pyplot as plt

    fig = eval_figure(result)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def eval_figure(result: EvalResult) -> Figure:
    """The plot of `write_plot`. Every bar carries its value (right/total for accuracy), so a forgetting ratio
    of exactly 0 reads as a measured 0 rather than as a missing bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    runs = [r for r in result.runs if r.accuracy is not None]
    xs = range(len(runs))
    fig, (ax_acc, ax_forget) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.38
    colors = [REFERENCE_COLOR if r.kind == "reference" else LEARNER_COLOR for r in runs]
    accuracy = ax_acc.bar([x - width / 2 for x in xs], [r.accuracy or 0 for r in runs], width, color=colors)
    ax_acc.bar_label(accuracy, [f"{r.correct}/{r.total}" for r in runs], fontsize=7)
    f1 = ax_acc.bar([x + width / 2 for x in xs], [r.f1 or 0 for r in runs], width, color=F1_COLOR)
    ax_acc.bar_label(f1, [f"{r.f1 or 0:.2f}" for r in runs], fontsize=7)
    ax_acc.set_xticks(list(xs), [r.name for r in runs], rotation=20)
    ax_acc.set_ylim(0, 1)
    ax_acc.set_ylabel("closed-book score")
    ax_acc.set_title(f"{result.questions} questions on {len(result.documents)} documents")
    handles = [
        Patch(color=REFERENCE_COLOR, label="accuracy (reference)"),
        Patch(color=LEARNER_COLOR, label="accuracy (learner)"),
        Patch(color=F1_COLOR, label="token F1"),
    ]
    ax_acc.legend(handles=handles, loc="upper left", fontsize=8)
    learners = [r for r in result.runs if r.kind == "learner" and r.forgetting_ratio is not None]
    ratios = [r.forgetting_ratio or 0.0 for r in learners]
    forgetting = ax_forget.bar([r.name for r in learners], ratios, color="#d62728")
    ax_forget.bar_label(forgetting, [f"{v:.3f}" for v in ratios], fontsize=8)
    ax_forget.axhline(
        FORGETTING_TARGET, color="black", linestyle="--", linewidth=1, label=f"ttt target {FORGETTING_TARGET}"
    )
    ax_forget.set_ylim(min([0.0, *ratios]) * 1.2, max([2 * FORGETTING_TARGET, *ratios]) * 1.2)
    ax_forget.set_title("forgetting ratio (lower is better)")
    ax_forget.tick_params(axis="x", rotation=20)
    ax_forget.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"loracle eval — {result.model}")
    fig.tight_layout()
    return fig


def latest_dir(kb_state: Path) -> Path:
    """Where a knowledge base keeps its latest eval (the server reads latest.json and latest.png there)."""
    return kb_state / "eval"


def write_latest(result: EvalResult, kb_state: Path) -> Path:
    folder = latest_dir(kb_state)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(result, folder / LATEST_JSON)
    write_plot(result, folder / LATEST_PNG)
    return folder
