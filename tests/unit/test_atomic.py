"""Atomic writes: a crash at any moment leaves the old file or folder or the new one, and its leftovers are
cleaned up by the next writer."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loracle import atomic
from loracle.atomic import atomic_folder, remove_leftover_files, replace_folder, restore_folder, write_text_atomic


def _folder(path: Path, text: str) -> Path:
    path.mkdir(parents=True)
    (path / "weights").write_text(text)
    return path


def test_replacing_a_folder_never_leaves_its_place_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash after the old folder left its place but before the new one took it would lose both from view."""
    target = _folder(tmp_path / "adapter", "old")
    staging = _folder(tmp_path / ".adapter.staging", "new")
    real_replace = os.replace

    def crash_after_first_rename(src, dst):  # the process dies right after the first rename
        real_replace(src, dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", crash_after_first_rename)
    with contextlib.suppress(KeyboardInterrupt):
        replace_folder(staging, target)
    assert (target / "weights").read_text() in ("old", "new")


def test_a_folder_left_aside_by_a_crash_is_put_back(tmp_path: Path) -> None:
    """Where the swap is not available, the old folder is renamed aside first: a crash then is repaired."""
    _folder(tmp_path / ".adapter.old-123", "old")
    assert restore_folder(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "weights").read_text() == "old"
    assert not restore_folder(tmp_path / "adapter")  # nothing to do once it is there


def test_staging_folders_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = _folder(tmp_path / f".ckpt.staging-{dead.stdout.strip()}-abcd", "half")
    live = _folder(tmp_path / f".ckpt.staging-{os.getpid()}-efgh", "in progress")
    with atomic_folder(tmp_path / "ckpt") as staging:
        (staging / "weights").write_text("new")
    assert not leftover.exists() and live.exists()
    assert (tmp_path / "ckpt" / "weights").read_text() == "new"


def test_leftover_temporary_files_are_removed_and_nothing_else(tmp_path: Path) -> None:
    write_text_atomic(tmp_path / "page.md", "done")
    (tmp_path / "sub").mkdir()
    leftover = tmp_path / "sub" / ".page.md.k2j4x9_a.tmp"
    leftover.write_text("half")
    mine = [tmp_path / ".notes.tmp", tmp_path / "draft.tmp", tmp_path / ".page.md.swp"]
    for path in mine:
        path.write_text("a person's")
    assert remove_leftover_files(tmp_path) == [leftover]
    assert all(path.exists() for path in mine) and (tmp_path / "page.md").read_text() == "done"
