"""`loracle eval-report`: a result saved by `loracle eval --json` shown again and redrawn, in a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from loracle.eval.harness import EvalResult, RunResult
from loracle.eval.report import write_json
from tests.e2e.cli import loracle

pytestmark = pytest.mark.e2e


def test_a_saved_result_is_shown_and_redrawn(tmp_path: Path) -> None:
    result = EvalResult("SmolLM2-135M-Instruct", "f00d", ["a.md", "b.md"], 46, {}, {})
    result.runs = [
        RunResult("floor", "reference", 0.043, 0.1, 2, 46),
        RunResult("ceiling", "reference", 0.587, 0.5, 27, 46),
        RunResult("ttt", "learner", 0.522, 0.15, 24, 46, 43.1, 39.9, 8_764_698, 0.944, 0.944, 0.0),
    ]
    saved, plot = tmp_path / "out.json", tmp_path / "out.png"
    write_json(result, saved)

    shown = loracle("eval-report", saved, "--plot", plot)
    assert shown.returncode == 0, shown.stderr
    assert "ttt 52% 24/46 89% 0.15 43.1 39.90 8.4 MB 94%→94% 0.000" in " ".join(shown.stdout.split())
    assert plot.read_bytes().startswith(b"\x89PNG") and f"wrote {plot}" in shown.stderr

    saved.write_text('{"model": "m"', encoding="utf-8")  # cut off mid-write by some other tool
    refused = loracle("eval-report", saved, "--plot", tmp_path / "second.png")
    assert refused.returncode == 1 and f"{saved}: not a JSON file" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "second.png").exists()
