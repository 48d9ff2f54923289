"""Where `loracle learn --save` writes, and what it refuses to replace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loracle.errors import LoracleError
from loracle.learners.checkpoint import META, load_checkpoint
from loracle.learners.session import checkpoint_learner, checkpoint_path, save_target


def test_a_plain_name_lives_in_the_knowledge_base_and_a_slash_makes_it_a_path(tmp_path: Path) -> None:
    assert checkpoint_path("notes", tmp_path) == tmp_path / ".loracle" / "checkpoints" / "notes"
    assert checkpoint_path(f"{tmp_path}/elsewhere", tmp_path) == tmp_path / "elsewhere"
    for bad in ("", "  ", "..", "my notes"):
        with pytest.raises(LoracleError, match="checkpoint name"):
            checkpoint_path(bad, tmp_path)


def test_saving_never_replaces_what_is_not_a_checkpoint(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("my only copy", encoding="utf-8")
    with pytest.raises(LoracleError, match=r"notes: a folder that is not a loracle checkpoint"):
        save_target(f"{notes}/")
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    with pytest.raises(LoracleError, match="a file, not a checkpoint folder"):
        save_target(f"{tmp_path}/file.txt")
    assert (notes / "a.md").read_text(encoding="utf-8") == "my only copy"

    old = tmp_path / "old"
    old.mkdir()
    (old / META).write_text("{}", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    assert save_target(f"{old}") == old  # an earlier checkpoint is replaced, as is an empty folder
    assert save_target(f"{tmp_path}/empty") == tmp_path / "empty"


@pytest.mark.parametrize(
    ("content", "problem"), [("{", "not valid JSON"), ("[1]", "not a checkpoint record (a JSON list, not an object)")]
)
def test_a_damaged_checkpoint_record_is_named_in_one_line(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / META).write_text(content, encoding="utf-8")
    with pytest.raises(LoracleError, match=re.escape(f"{META}: {problem}")):
        load_checkpoint(tmp_path, "context", "f00d")
    with pytest.raises(LoracleError, match=re.escape(f"{META}: {problem}")):  # `ask --load` reads it the same way
        checkpoint_learner(tmp_path)
