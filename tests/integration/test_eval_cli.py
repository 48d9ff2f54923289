"""`loracle eval` end to end on the real embedded model: the sample document, context and kstore learners."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.integration
def test_loracle_eval_on_the_sample(sample_dir: Path, tmp_path: Path) -> None:
    out_json, out_png = tmp_path / "eval.json", tmp_path / "eval.png"
    command = [
        str(Path(sys.executable).parent / "loracle"),
        "eval",
        *("--docs", str(sample_dir), "--qa", str(sample_dir / "questions.jsonl")),
        *("--learners", "context,kstore", "--max-questions", "3", "--max-new-tokens", "16", "--no-forgetting"),
        *("-o", "context.max_new_tokens=16", "-o", "context.vectors=false", "-o", "kstore.max_new_tokens=16"),
        *("--json", str(out_json), "--plot", str(out_png), "--threads", "1"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ceiling" in done.stdout and "kstore" in done.stdout
    result = json.loads(out_json.read_text(encoding="utf-8"))
    runs = {r["name"]: r for r in result["runs"]}
    assert list(runs) == ["floor", "ceiling", "context", "kstore"]
    assert all(runs[n]["total"] == 3 and runs[n]["error"] is None for n in runs)
    # the sample's facts are fictional: the document in context must beat the closed-book floor
    assert runs["ceiling"]["accuracy"] > runs["floor"]["accuracy"]
    assert runs["kstore"]["bytes_on_disk"] > 100_000  # one fp16 state per stored token
    assert out_png.read_bytes()[:4] == b"\x89PNG"
