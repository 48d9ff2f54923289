"""The learning curve of a hypernetwork training run, read from its JSONL log and drawn with matplotlib.

The log holds a line per training step and, when a held-out set was given, a line every few steps with the KL
on held-out documents (key `heldout_kl`); they are read apart."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from loracle.errors import LoracleError

#: the key of a held-out evaluation's line in the log
HELDOUT = "heldout_kl"


def read_log(path: Path, until: int | None = None) -> list[dict[str, Any]]:
    """The training steps' records of a train.jsonl, in order (a line a kill cut short is skipped); with `until`,
    only those of steps up to it (a checkpoint's step: a run stopped after it logged steps its network lacks)."""
    return [r for r in _records(path, until) if HELDOUT not in r]


def read_heldout(path: Path, until: int | None = None) -> list[dict[str, Any]]:
    """The held-out evaluations' records of a train.jsonl, in order; with `until`, those up to that step."""
    return [r for r in _records(path, until) if HELDOUT in r]


def _records(path: Path, until: int | None) -> list[dict[str, Any]]:
    if not path.is_file():
        raise LoracleError(f"{path}: no training log here (train first: loracle train-hypernet)")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "step" in record and (until is None or record["step"] <= until):
            records.append(record)
    return records


def moving_average(values: list[float], window: int) -> list[float]:
    return [statistics.fmean(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))]


def plot_curve(
    records: list[dict[str, Any]],
    png: Path,
    title: str = "Doc-to-LoRA hypernetwork training",
    heldout: list[dict[str, Any]] | None = None,
) -> None:
    """KL on the documents' answers and on the interference prompts per step, with moving averages, and the KL
    on held-out documents where it was measured."""
    try:
        import matplotlib
    except ImportError as exc:
        raise LoracleError("--plot: needs matplotlib (pip install 'loracle[eval]')") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records:
        raise LoracleError(f"{png}: nothing to plot (the log has no steps yet)")
    steps = [r["step"] for r in records]
    window = max(1, min(50, len(records) // 10))
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("kl", "KL on document answers"), ("interference", "KL on general prompts (interference)")):
        values = [float(r.get(key, 0.0)) for r in records]
        if key == "interference" and not any(values):
            continue
        (line,) = ax.plot(steps, values, alpha=0.25)
        ax.plot(steps, moving_average(values, window), color=line.get_color(), label=f"{label}, {window}-step mean")
    if heldout:
        label = f"KL on held-out document answers ({heldout[-1].get('heldout_docs', '?')} documents)"
        ax.plot([r["step"] for r in heldout], [r[HELDOUT] for r in heldout], "o-", color="black", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("KL(teacher top-k || student), nats/token")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
