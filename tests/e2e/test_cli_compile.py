"""`loracle compile`, `adapters ...`, `ask --adapter` and `watch` as a user runs them: subprocesses on a tmp
knowledge base with the real embedded model and the ttt learner at its smallest settings."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gguf import GGUFReader

pytestmark = pytest.mark.e2e

LORACLE = [str(Path(sys.executable).parent / "loracle")]
#: ttt at its smallest: one step, one sentence studied, two general examples
TTT = ["--learner", "ttt", "-o", "steps_per_doc=1", "-o", "max_sentences=1", "-o", "general_examples=2"]
TTT += ["--threads", "2"]


def learner_args() -> list[str]:
    """The hypernetwork once its checkpoint ships (one forward per document), else ttt at its smallest."""
    from loracle.learners.hypernet.checkpoint import shipped_path
    from loracle.model.embedded import EMBEDDED_NAME

    if shipped_path(EMBEDDED_NAME).is_dir():
        return ["--learner", "hypernet", "--threads", "2"]
    return TTT


def run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LORACLE, *args], capture_output=True, text=True, timeout=timeout, check=False)


def make_kb(root: Path) -> Path:
    (root / "wiki").mkdir(parents=True)
    (root / "loracle.toml").write_text("", encoding="utf-8")
    (root / "wiki" / "Kestrel Notes.md").write_text("Ilse Marrow founded the Kestrel observatory.", encoding="utf-8")
    (root / "wiki" / "corra.md").write_text("The river Corra powers the Varn station.", encoding="utf-8")
    (root / "wiki" / "broken.md").write_bytes(b"caf\xe9 latin-1")
    return root


def test_compile_ask_merge_export(tmp_path: Path) -> None:
    kb = make_kb(tmp_path / "kb")
    learner = learner_args()
    done = run("compile", "--kb", str(kb), *learner)
    assert done.returncode == 0, done.stderr
    assert "compiled 2" in done.stdout and "failed 1" in done.stdout
    assert "broken.md" in done.stderr and "UTF-8" in done.stderr
    assert re.search(r"^compiled kestrel-notes in \d+\.\d s \([12]/2\)$", done.stderr, re.M), done.stderr
    adapters = kb / "adapters"
    assert sorted(p.name for p in adapters.iterdir()) == ["corra", "kestrel-notes"]
    manifest = json.loads((adapters / "kestrel-notes" / "manifest.json").read_text())
    assert manifest["learner"] == learner[1] and manifest["content_hash"] and manifest["base_fingerprint"]

    asked = run(
        "ask", "Who founded the Kestrel observatory?", "--adapter", str(adapters / "kestrel-notes"),
        "--adapter", str(adapters / "corra"), "--adapter-weights", "1,0.5", "--max-tokens", "8", "--threads", "2",
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.strip()

    merged = run("adapters", "merge", "kestrel-notes", "corra", "--out", "both", "--method", "cat", "--kb", str(kb))
    assert merged.returncode == 0, merged.stderr
    assert json.loads((adapters / "both" / "manifest.json").read_text())["inputs"] == ["kestrel-notes", "corra"]
    out = tmp_path / "both.gguf"
    exported = run("adapters", "export", "both", "--out", str(out), "--kb", str(kb))
    assert exported.returncode == 0, exported.stderr
    reader = GGUFReader(out)
    assert reader.get_field("adapter.type").contents() == "lora"
    assert any(t.name.endswith("ffn_down.weight.lora_a") for t in reader.tensors)

    removed = run("adapters", "rm", "both", "--kb", str(kb))
    assert removed.returncode == 0 and not (adapters / "both").exists()


def test_watch_compiles_a_saved_page_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    (kb / "wiki").mkdir(parents=True)
    (kb / "loracle.toml").write_text("", encoding="utf-8")
    watcher = subprocess.Popen(
        [*LORACLE, "watch", "--kb", str(kb), "--no-ingest", *learner_args()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert watcher.stdout is not None
        line = watcher.stdout.readline()
        assert line.startswith("watching"), line + (watcher.stderr.read() if watcher.stderr else "")
        (kb / "wiki" / "saved.md").write_text("The Varn ferry sails at dawn.", encoding="utf-8")
        deadline = time.monotonic() + 900
        while not (kb / "adapters" / "saved" / "manifest.json").exists():
            assert watcher.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=120)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, err
    assert "stopped: 1 compiled" in out
    assert sorted(p.name for p in (kb / "adapters").iterdir()) == ["saved"]
