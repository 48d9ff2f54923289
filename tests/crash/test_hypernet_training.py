"""kill -9 a `loracle train-hypernet` run while it writes a checkpoint, resume it: it ends with exactly the
weights and the log of a run that was never killed (the tiny model, a cached set from `loracle hypernet-data`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from loracle.learners.hypernet.curve import read_log
from tests.crash.runner import ForkedCli, run

pytestmark = pytest.mark.crash

NETWORK = ["--rank", "2", "--width", "16", "--heads", "2", "--bias-rank", "2", "--checkpoint-every", "2"]


def test_a_run_killed_mid_checkpoint_resumes_to_the_same_weights(
    forked_cli: ForkedCli, tiny_model_dir: Path, tmp_path: Path
) -> None:
    model = ["--model", str(tiny_model_dir), "--threads", "1"]
    data = tmp_path / "data"
    made = run(forked_cli, "hypernet-data", "--out", data, "--kinds", "single:6,multi:2", "--shard-docs", "4",
               "--max-doc-tokens", "64", *model)  # fmt: skip
    assert made.returncode == 0, made.output

    def train(out: Path, *extra: str, crash_at: str | None = None):
        return run(forked_cli, "train-hypernet", "--data", data, "--out", out, "--steps", "6", *NETWORK, *model,
                   *extra, crash_at=crash_at)  # fmt: skip

    assert train(tmp_path / "straight").returncode == 0
    killed = train(tmp_path / "killed", crash_at="folder-swap@2")  # while replacing step 2's checkpoint with step 4's
    assert killed.killed, killed.output
    meta = json.loads((tmp_path / "killed" / "checkpoint" / "meta.json").read_text(encoding="utf-8"))
    assert (meta["hypernet"]["rank"], meta["hypernet"]["width"], meta["train_config"]["checkpoint_every"]) == (2, 16, 2)
    assert meta["step"] == 2 and len(read_log(tmp_path / "killed" / "train.jsonl")) == 4  # steps 3, 4 to redo
    refused = train(tmp_path / "killed")
    assert refused.returncode != 0 and "pass --resume" in refused.output and "Traceback" not in refused.output
    resumed = train(tmp_path / "killed", "--resume", "--plot", str(tmp_path / "curve.png"))
    assert resumed.returncode == 0, resumed.output

    straight, again = (
        load_file(tmp_path / run_ / "checkpoint" / "tensors.safetensors") for run_ in ("straight", "killed")
    )
    weights = [k for k in straight if k.startswith("net.")]
    assert weights and all(torch.equal(straight[k], again[k]) for k in weights)
    logs = [read_log(tmp_path / run_ / "train.jsonl") for run_ in ("straight", "killed")]
    assert [r["step"] for r in logs[1]] == [1, 2, 3, 4, 5, 6]
    assert [r["kl"] for r in logs[0]] == [r["kl"] for r in logs[1]]
    assert (tmp_path / "curve.png").is_file()
