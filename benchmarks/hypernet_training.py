"""How the shipped hypernetwork checkpoint was trained: steps, data mix, time, the loss curve (JSON + PNG).

Reads the history the trainer stored in the checkpoint's meta.json (nothing typed by hand).
Run: .venv/bin/python -m benchmarks.hypernet_training
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from benchmarks.common import row, write_result
from loracle.learners.hypernet.checkpoint import shipped_path
from loracle.model.embedded import EMBEDDED_NAME

PNG = Path(__file__).parent / "hypernet_training.png"


def moving_average(values: list[float], window: int) -> list[float]:
    return [statistics.fmean(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))]


def main() -> None:
    folder = shipped_path(EMBEDDED_NAME)
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    history = meta["history"]
    kl = [h["kl"] for h in history]
    window = max(1, min(20, len(kl) // 4))
    smooth = moving_average(kl, window)
    seconds = sum(h["seconds"] for h in history)
    kinds = {k: sum(h["kind"] == k for h in history) for k in sorted({h["kind"] for h in history})}
    size = (folder / "tensors.safetensors").stat().st_size
    first, last = statistics.fmean(kl[:window]), statistics.fmean(kl[-window:])
    rows = [
        row("training steps (one document, up to 4 questions each)", len(history), "steps"),
        row("training wall time (CPU, shared machine, niced, 1 thread)", seconds / 60, "min"),
        row(f"KL, mean of the first {window} steps", first, "nats/token"),
        row(f"KL, mean of the last {window} steps", last, "nats/token", note="different documents every step"),
        row("shipped checkpoint size (fp16)", size / 1e6, "MB", "tens of MB at most", size < 50e6),
    ]
    data = {
        "checkpoint": str(folder.relative_to(Path(__file__).parent.parent / "src")),
        "commands": meta.get("commands", []),
        "train_config": meta.get("train_config"),
        "hypernet": meta.get("hypernet"),
        "documents_by_kind": kinds,
        "history": history,
    }
    write_result("hypernet_training", rows, data)
    plot(kl, smooth, window)


def plot(kl: list[float], smooth: list[float], window: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = range(1, len(kl) + 1)
    ax.plot(steps, kl, alpha=0.35, label="KL per step")
    ax.plot(steps, smooth, label=f"moving average ({window} steps)")
    ax.set_xlabel("step")
    ax.set_ylabel("KL(teacher top-k || student), nats/token")
    ax.set_title("Doc-to-LoRA hypernetwork: context distillation on CPU")
    ax.legend()
    fig.tight_layout()
    fig.savefig(PNG, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
