"""The eval result as a rich table, a JSON file and a bar chart; plus the copy a knowledge base's server shows."""

from __future__ import annotations

import json
from pathlib import Path

from rich import box
from rich.table import Table

from loracle.atomic import write_bytes_atomic, write_text_atomic
from loracle.eval.harness import EvalResult, RunResult

LATEST_JSON = "latest.json"
LATEST_PNG = "latest.png"


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


def results_table(result: EvalResult) -> Table:
    table = Table(
        title=f"loracle eval — {result.model}, {len(result.documents)} documents, {result.questions} questions",
        caption="floor: base model, no document; ceiling: base model with the right document(s) in context",
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


def write_plot(result: EvalResult, path: Path) -> None:
    """Accuracy and F1 per learner (references shaded), and the forgetting ratio, as one PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in result.runs if r.accuracy is not None]
    names = [r.name for r in runs]
    xs = range(len(runs))
    fig, (ax_acc, ax_forget) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.38
    colors = ["#9e9e9e" if r.kind == "reference" else "#1f77b4" for r in runs]
    ax_acc.bar([x - width / 2 for x in xs], [r.accuracy or 0 for r in runs], width, color=colors, label="accuracy")
    ax_acc.bar([x + width / 2 for x in xs], [r.f1 or 0 for r in runs], width, color="#ff7f0e", label="token F1")
    ax_acc.set_xticks(list(xs), names, rotation=20)
    ax_acc.set_ylim(0, 1)
    ax_acc.set_ylabel("closed-book score")
    ax_acc.set_title(f"{result.questions} questions on {len(result.documents)} documents")
    ax_acc.legend(loc="upper left", fontsize=8)
    learners = [r for r in result.runs if r.kind == "learner" and r.forgetting_ratio is not None]
    ax_forget.bar([r.name for r in learners], [r.forgetting_ratio or 0 for r in learners], color="#d62728")
    ax_forget.axhline(0.05, color="black", linestyle="--", linewidth=1, label="target 0.05")
    ax_forget.set_title("forgetting ratio (lower is better)")
    ax_forget.tick_params(axis="x", rotation=20)
    ax_forget.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"loracle eval — {result.model}")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def latest_dir(kb_state: Path) -> Path:
    """Where a knowledge base keeps its latest eval (the server reads latest.json and latest.png there)."""
    return kb_state / "eval"


def write_latest(result: EvalResult, kb_state: Path) -> Path:
    folder = latest_dir(kb_state)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(result, folder / LATEST_JSON)
    write_plot(result, folder / LATEST_PNG)
    return folder
