"""The folder watcher fires once per file per burst of saves, and ignores hidden folders."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from loracle.errors import LoracleError
from loracle.sources.watch import watch_folder


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Path] = []
        self.lock = threading.Lock()

    def __call__(self, path: Path) -> None:
        with self.lock:
            self.calls.append(path)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Path]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.calls) >= count:
                    break
            time.sleep(0.05)
        return list(self.calls)


def test_burst_of_saves_fires_once_per_file(tmp_path: Path) -> None:
    recorder = Recorder()
    with watch_folder(tmp_path, recorder, debounce_s=0.4) as watcher:
        a, b = tmp_path / "a.md", tmp_path / "sub" / "b.md"
        b.parent.mkdir()
        for i in range(5):  # five saves of a and three of b within ~0.1 s
            a.write_text(f"version {i}\n", encoding="utf-8")
            if i < 3:
                b.write_text(f"version {i}\n", encoding="utf-8")
            time.sleep(0.02)
        calls = recorder.wait_for(2)
        time.sleep(0.8)  # nothing more arrives after the burst has been reported
        assert sorted(recorder.calls) == sorted([a.resolve(), b.resolve()])
        assert watcher.errors == []
    assert calls


def test_deleted_file_is_reported_and_hidden_folders_ignored(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("x\n", encoding="utf-8")
    (tmp_path / ".loracle").mkdir()
    recorder = Recorder()
    with watch_folder(tmp_path, recorder, debounce_s=0.2):
        (tmp_path / ".loracle" / "search.db").write_text("state\n", encoding="utf-8")
        page.unlink()
        calls = recorder.wait_for(1)
        time.sleep(0.5)
    assert calls == [page.resolve()] and recorder.calls == [page.resolve()]


def test_failing_callback_does_not_stop_the_watcher(tmp_path: Path) -> None:
    seen: list[Path] = []

    def callback(path: Path) -> None:
        seen.append(path)
        if path.name == "bad.md":
            raise RuntimeError("boom")

    with watch_folder(tmp_path, callback, debounce_s=0.2) as watcher:
        (tmp_path / "bad.md").write_text("x\n", encoding="utf-8")
        deadline = time.monotonic() + 10
        while not watcher.errors and time.monotonic() < deadline:
            time.sleep(0.05)
        (tmp_path / "good.md").write_text("y\n", encoding="utf-8")
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [p.name for p in seen] == ["bad.md", "good.md"]
    assert "boom" in watcher.errors[0]


def test_watching_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LoracleError, match="not a folder"), watch_folder(tmp_path / "nope", print):
        pass
