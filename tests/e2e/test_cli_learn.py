"""`loracle learn --save` then `loracle ask --load`, end to end in subprocesses, with the context learner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.cli import loracle

pytestmark = pytest.mark.e2e


def test_learn_save_then_ask_load_inside_a_knowledge_base(tmp_path: Path, sample_dir: Path) -> None:
    kb = tmp_path / "kb"
    (kb / "raw").mkdir(parents=True)
    (kb / "loracle.toml").write_text("", encoding="utf-8")
    doc = kb / "raw" / "kestrel.md"
    doc.write_text((sample_dir / "kestrel-valley-observatory.md").read_text(encoding="utf-8"), encoding="utf-8")
    (kb / "raw" / "broken.md").write_bytes(b"\xff\xfe not utf-8")

    options = ("-o", "own_passage_tokens=null", "-o", "top_k=2")
    learned = loracle("learn", "raw", "--learner", "context", *options, "--save", "notes", "--threads", "1", cwd=kb)
    assert learned.returncode == 0, learned.stderr
    assert "broken.md" in learned.stderr and "UTF-8" in learned.stderr  # the bad file is named, the rest goes on
    checkpoint = kb / ".loracle" / "checkpoints" / "notes"
    meta = json.loads((checkpoint / "meta.json").read_text(encoding="utf-8"))
    assert meta["learner"] == "context" and meta["chunks"]
    assert meta["config"]["own_passage_tokens"] is None and meta["config"]["top_k"] == 2

    typo = loracle("learn", "raw", "-o", "topk=2", "--save", "typo", "--threads", "1", cwd=kb)
    assert typo.returncode == 1 and "has no option 'topk'" in typo.stderr
    assert len(typo.stderr.strip().splitlines()) == 1 and not (kb / ".loracle" / "checkpoints" / "typo").exists()

    asked = loracle("ask", "--load", "notes", "--threads", "1", "Which river powers the observatory?", cwd=kb)
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.strip()
    assert "(kestrel, line 5)" in asked.stdout  # the citation: document id and the line in the file on disk
    outside = loracle(
        "ask", "--load", "notes", "--kb", kb, "--threads", "1", "Which river powers the observatory?", cwd=tmp_path
    )
    assert outside.returncode == 0 and "(kestrel, line 5)" in outside.stdout, outside.stderr  # as learn --kb saves

    refused = loracle("learn", "raw", "--save", "raw/", "--threads", "1", cwd=kb)  # would replace the documents
    assert refused.returncode == 1 and "not a loracle checkpoint" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and doc.is_file()

    missing = loracle("ask", "--load", "nothing-here", "--threads", "1", "Who?", cwd=kb)
    assert missing.returncode == 1
    assert "no such checkpoint" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
