"""What every benchmark shares: machine facts, and writing results then regenerating RESULTS.md and ABLATIONS.md.

A result file holds {"name", "machine", "when" (the run's start), "rows": [{"metric", "value", "unit", "target",
"met", "note"}], "data": {...raw measurements...}}. Suites write results/<name>.json; ablations
(benchmarks/ablate.py) write results/ablations/<name>.json. RESULTS.md opens with the learner x corpus table
(results/learners.json) and then every suite; ABLATIONS.md holds every ablation. Both are rebuilt from the
result files, never edited by hand.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from loracle.atomic import write_text_atomic

RESULTS_DIR = Path(__file__).parent / "results"
RESULTS_MD = Path(__file__).parent / "RESULTS.md"
ABLATIONS_DIR = RESULTS_DIR / "ablations"
ABLATIONS_MD = Path(__file__).parent / "ABLATIONS.md"
#: the columns of the learner x corpus table, in order: (key in a table entry, heading)
TABLE_COLUMNS = (
    ("learner", "learner"),
    ("corpus", "corpus"),
    ("accuracy", "accuracy / ceiling"),
    ("interval", "95% interval of the ratio"),
    ("forgetting", "forgetting"),
    ("learn_s_300", "learning s / 300 tokens"),
    ("answer_s", "answer s / question"),
    ("bytes", "bytes on disk"),
    ("run", "run"),
)


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


#: when this process began and the load then: a record written without its own machine facts was started then
PROCESS_START = {"started": _now(), "load_avg_1m_at_start": _load()}


def machine_info() -> dict[str, Any]:
    """The machine's facts, with the time and load now (call it where a run starts)."""
    import torch

    return {
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_avg_1m_at_start": _load(),
        "started": _now(),
    }


def row(
    metric: str, value: float | int | str, unit: str = "", target: str = "", met: bool | None = None, note: str = ""
) -> dict:
    return {"metric": metric, "value": value, "unit": unit, "target": target, "met": met, "note": note}


def discordant(challenger: list[bool], incumbent: list[bool]) -> tuple[int, int]:
    """The questions only `challenger` gets right and those only `incumbent` gets right, on the same questions."""
    gained = sum(c and not i for c, i in zip(challenger, incumbent, strict=True))
    lost = sum(i and not c for c, i in zip(challenger, incumbent, strict=True))
    return gained, lost


def _write(folder: Path, name: str, rows: list[dict], data: dict[str, Any], machine: dict[str, Any] | None) -> Path:
    """Write <folder>/<name>.json as a result file (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    machine = machine or {**machine_info(), **PROCESS_START}
    record = {
        "name": name,
        "when": machine.get("started") or _now(),  # when the run began, as its load is from then
        "machine": machine,
        "rows": rows,
        "data": data,
    }
    path = folder / f"{name}.json"
    write_text_atomic(path, json.dumps(record, indent=2, default=str) + "\n")
    return path


def write_result(name: str, rows: list[dict], data: dict[str, Any], machine: dict[str, Any] | None = None) -> Path:
    """Write results/<name>.json and regenerate RESULTS.md from every result file."""
    path = _write(RESULTS_DIR, name, rows, data, machine)
    write_results_md()
    return path


def write_ablation(name: str, rows: list[dict], data: dict[str, Any], machine: dict[str, Any] | None = None) -> Path:
    """Write results/ablations/<name>.json and regenerate ABLATIONS.md from every ablation record."""
    path = _write(ABLATIONS_DIR, name, rows, data, machine)
    write_ablations_md()
    return path


def read_result(name: str) -> dict[str, Any]:
    """The "data" part of results/<name>.json, as `write_result` wrote it (one dev script reads another's)."""
    return json.loads((RESULTS_DIR / f"{name}.json").read_text(encoding="utf-8"))["data"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _machine_line(record: dict[str, Any]) -> str:
    machine = record.get("machine", {})
    return (
        f"Run {record['when']} on {machine.get('cores')} cores ({machine.get('cpu')}), torch {machine.get('torch')}, "
        f"{machine.get('threads')} threads, GPU: {machine.get('cuda') or 'none'}, "
        f"load average at start: {machine.get('load_avg_1m_at_start')}."
    )


def _rows_table(rows: list[dict]) -> list[str]:
    lines = ["| metric | value | unit | target | met | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        met = {True: "yes", False: "**no**", None: ""}[r.get("met")]
        cells = [r["metric"], _fmt(r["value"]), r.get("unit", ""), r.get("target", ""), met, r.get("note", "")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def learner_table(entries: list[dict[str, Any]]) -> list[str]:
    """The learner x corpus table: one row per entry (see TABLE_COLUMNS)."""
    lines = ["| " + " | ".join(head for _, head in TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for entry in entries:
        lines.append("| " + " | ".join(str(entry.get(key, "")) for key, _ in TABLE_COLUMNS) + " |")
    return lines


def summary_table_lines(table: dict[str, Any]) -> list[str]:
    """A suite's own table (data["summary_table"]: {"columns": [...], "rows": [[cell, ...], ...]}) as markdown."""
    columns = table["columns"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(str(cell) for cell in cells) + " |" for cells in table["rows"]]


def write_results_md() -> None:
    lines = [
        "# Benchmark results",
        "",
        "Generated by `benchmarks/*.py` from `benchmarks/results/*.json`; never edited by hand. Ablations (settings",
        "compared on dev data) are in ABLATIONS.md. The machine is shared and noisy: compare ratios measured within",
        "one run rather than absolute figures across runs.",
        "",
    ]
    learners = RESULTS_DIR / "learners.json"
    records = {path: json.loads(path.read_text(encoding="utf-8")) for path in sorted(RESULTS_DIR.glob("*.json"))}
    if learners.is_file():
        record = records[learners]
        # suites that measure a learner another way (benchmarks.adapters) add their rows to the learners table
        extra = [entry for other in records.values() for entry in other["data"].get("learner_entries", [])]
        lines += [
            "## Learners",
            "",
            "Every learner on every corpus (`python -m benchmarks.learners`): accuracy against the ceiling (the base",
            "model with the document in context) of the same run, with a 95% paired bootstrap interval of that ratio;",
            "forgetting on the general set; learning seconds per 300-token document; answer seconds per question;",
            "bytes on disk. Each row's run names its commit and time and, where measured, the seconds of one forward",
            "pass over 300 tokens then (the shared machine's speed: divide timings by it to compare runs); a learner",
            "not yet run on a corpus says so. Rows named `learner: path (benchmarks.adapters)` are the compiled",
            "adapters measured as a user meets them (a plain PEFT load of the question's own document's adapter, or",
            "the routed answer of `ask --kb`); their sections below have the detail.",
            "",
            *learner_table(record["data"].get("table", []) + extra),
            "",
        ]
        if engine_rows := record["data"].get("engine_rows"):
            lines += [
                "Answer time with the OpenVINO engine against torch, from one `--engines torch,openvino` run (learning",
                "is torch's either way; these runs are often cut short and stay out of the table above):",
                "",
                *_rows_table(engine_rows),
                "",
            ]
    for path, record in records.items():
        if path == learners:
            continue
        lines += [f"## {record['name']}", "", _machine_line(record), ""]
        if table := record["data"].get("summary_table"):
            lines += [*summary_table_lines(table), ""]
        lines += [*_rows_table(record["rows"]), ""]
    write_text_atomic(RESULTS_MD, "\n".join(lines))


def write_ablations_md() -> None:
    lines = [
        "# Ablations",
        "",
        "Settings of a learner compared on dev data, never on an evaluation set; generated from",
        "`benchmarks/results/ablations/*.json`, never edited by hand. An experiment with a data file",
        "(`benchmarks/experiments/<name>.toml`) is rerun with `python -m benchmarks.ablate <file>`; a record from",
        "before the runner keeps the rows its dev script wrote (the script is at the commit it names). What each",
        "measured, its rule and its outcome: docs/experiments/<learner>.md.",
        "",
    ]
    for path in sorted(ABLATIONS_DIR.glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        data = record.get("data", {})
        lines += [f"## {record['name']}", ""]
        if data.get("question"):
            source = data.get("source", "")
            kept = (Path(__file__).parent.parent / source).is_file()
            gone = "" if kept else " (deleted with the options it tried; this record holds its arms)"
            lines += [f"{data['learner']}: {data['question']} Data file: `{source}`{gone}.", ""]
        if data.get("record_of"):
            lines += [f"Record of {data['record_of']}.", ""]
        lines += [_machine_line(record), "", *_rows_table(record["rows"]), ""]
    write_text_atomic(ABLATIONS_MD, "\n".join(lines))


if __name__ == "__main__":
    write_results_md()
    write_ablations_md()
