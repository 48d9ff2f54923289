"""The wiki commands end to end: `loracle init/ingest/status/lint` as subprocesses on a temporary knowledge base.

The writer is a real OpenAI-compatible HTTP endpoint (a small canned server, tests/e2e/writer.py), configured
in loracle.toml the way a user points loracle at Ollama or llama.cpp, so no model is loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.writer import serve_writer, use_writer

pytestmark = pytest.mark.e2e

SOURCE = """---
title: Corra River
---
# Corra River

The Corra River flows past the Kestrel Valley Observatory and powers its hydroelectric plant.
The river freezes each January.
"""


@pytest.fixture
def endpoint() -> Iterator[str]:
    with serve_writer() as url:
        yield url


def loracle(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("LORACLE_KB", None)
    return subprocess.run(
        [str(Path(sys.executable).parent / "loracle"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_init_ingest_status_lint(tmp_path: Path, endpoint: str) -> None:
    kb = tmp_path / "kb"
    done = loracle("init", str(kb), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    use_writer(kb, endpoint)
    source = tmp_path / "corra.md"
    source.write_text(SOURCE)
    (tmp_path / "bad.md").write_bytes(b"\xff\xfe not utf-8")

    done = loracle("ingest", str(source), str(tmp_path / "bad.md"), "--kb", str(kb), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "added: raw/corra.md -> sources/corra-river-summary.md (2 LLM calls" in done.stdout
    assert "Atlantis" in done.stdout  # reported as dropped: not in the source
    assert "bad.md: not valid UTF-8" in done.stderr
    assert (kb / "wiki/entities/corra-river.md").exists() and not (kb / "wiki/entities/atlantis.md").exists()

    done = loracle("ingest", str(source), "--kb", str(kb), cwd=tmp_path)
    assert "unchanged: raw/corra.md" in done.stdout and "0 added, 0 updated, 1 unchanged" in done.stdout

    done = loracle("lint", "--no-llm", "--kb", str(kb), cwd=tmp_path)
    assert done.returncode == 0 and "0 errors, 0 warnings" in done.stdout, done.stdout  # a fresh wiki is clean

    done = loracle("status", "--json", cwd=kb)  # found from the working folder
    status = json.loads(done.stdout)
    assert status["sources"] == 1 and status["pages"] == {"entity": 2, "source": 1} and status["stale"] is False
    assert status["links"] == status["links_resolved"] > 0

    (kb / "wiki/entities/corra-river.md").write_text(
        (kb / "wiki/entities/corra-river.md").read_text() + "\nSee [[Nowhere]].\n"
    )
    done = loracle("lint", "--json", "--no-llm", "--kb", str(kb), cwd=tmp_path)
    report = json.loads(done.stdout)
    assert report["counts"]["broken_link"] == 1 and report["findings"][0]["evidence"][0].startswith("entities/corra")
    assert report["findings"][0]["severity"] == "error" and report["errors"] == 1
    assert done.returncode == 1  # an error fails the lint, so a knowledge base's CI can run it
    done = loracle("lint", "--no-llm", "--exit-zero", "--kb", str(kb), cwd=tmp_path)
    assert done.returncode == 0 and "1 errors, 0 warnings" in done.stdout

    done = loracle("ingest", str(tmp_path / "bad.md"), "--kb", str(kb), cwd=tmp_path)
    assert done.returncode == 1 and "not valid UTF-8" in done.stderr and "Traceback" not in done.stderr


def test_commands_outside_a_knowledge_base_fail_in_one_line(tmp_path: Path) -> None:
    done = loracle("status", cwd=tmp_path)
    assert done.returncode == 1 and "not inside a loracle knowledge base" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
