"""`loracle bake` end to end in subprocesses on the tiny model saved as a folder: it writes an adapter that
`loracle ask --adapter` loads, and refuses bad input in one line before loading any model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.cli import loracle

pytestmark = pytest.mark.e2e

SMALL = [
    "-o",
    'modules=["q_proj","v_proj"]',
    "-o",
    "written_prompts=1",
    "-o",
    "general_prompts=3",
    "-o",
    "reply_tokens=4",
]


def test_bake_then_ask_with_the_baked_adapter(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "french"
    baked = loracle(
        "bake", "Answer in French.", "--out", out, "--steps", "2", *SMALL, "--model", tiny_model_dir, "--threads", "1"
    )
    assert baked.returncode == 0, baked.stderr
    assert f"wrote {out}" in baked.stdout
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["instruction"] == "Answer in French." and manifest["config"]["steps"] == 2

    asked = loracle("ask", "Hello?", "--adapter", out, "--model", tiny_model_dir, "--max-tokens", "3", "--threads", "1")
    assert asked.returncode == 0, asked.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["  "], "error: bake: instruction: Value error, the instruction is blank"),
        (["Answer in French.", "-o", "rank=0"], "error: bake: rank: Input should be greater than or equal to 1"),
        (["Answer in French.", "-o", "rnak=4"], "error: bake: rnak: Extra inputs are not permitted"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, args: list[str], says: str) -> None:
    done = loracle("bake", *args, "--out", tmp_path / "x", "--model", tmp_path / "no-such-model")
    assert done.returncode == 1
    assert done.stderr.strip().startswith(says) and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
