"""Watch a folder for changed files, debounced per path: a burst of events for one file fires one callback.

Editors save in several steps (write temp, rename, touch), and a person may save twice in a second; the
callback runs once per file, `debounce_s` after the last event for that file, in a background thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer


class DebouncedWatcher(FileSystemEventHandler):
    """Collects file events under `root` and calls `callback(path)` once per path after `debounce_s` of quiet.

    The callback gets the path that changed, was created, or was deleted (check `path.exists()`); a rename
    reports both names. Hidden files and anything under a hidden folder (e.g. .loracle/) are ignored.
    """

    def __init__(self, root: Path, callback: Callable[[Path], None], debounce_s: float = 0.5) -> None:
        self.root = root.resolve()
        self.callback = callback
        self.debounce_s = debounce_s
        self.errors: list[str] = []  # one line per callback that raised (the watcher keeps going)
        self._due: dict[Path, float] = {}
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="loracle-watch-debounce", daemon=True)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                self._touch(Path(raw.decode() if isinstance(raw, bytes) else raw))

    def _touch(self, path: Path) -> None:
        try:
            relative = path.resolve().relative_to(self.root)
        except ValueError:
            return
        if any(part.startswith(".") for part in relative.parts):
            return
        with self._wake:
            self._due[self.root / relative] = time.monotonic() + self.debounce_s
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and not self._ready():
                    timeout = min(self._due.values()) - time.monotonic() if self._due else None
                    self._wake.wait(timeout)
                if self._stopping:
                    return
                now = time.monotonic()
                ready = sorted(path for path, due in self._due.items() if due <= now)
                for path in ready:
                    del self._due[path]
            for path in ready:
                try:
                    self.callback(path)
                except Exception as exc:  # a failing callback must not kill the watcher
                    self.errors.append(f"{path}: {type(exc).__name__}: {exc}")

    def _ready(self) -> bool:
        now = time.monotonic()
        return any(due <= now for due in self._due.values())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join()

    def pending(self) -> int:
        with self._wake:
            return len(self._due)


@contextlib.contextmanager
def watch_folder(path: Path, callback: Callable[[Path], None], debounce_s: float = 0.5) -> Iterator[DebouncedWatcher]:
    """Watch `path` recursively while the block runs; `callback(file)` fires once per file per burst."""
    if not path.is_dir():
        from loracle.errors import LoracleError

        raise LoracleError(f"{path}: not a folder to watch")
    watcher = DebouncedWatcher(path, callback, debounce_s)
    observer = Observer()
    observer.schedule(watcher, str(path), recursive=True)
    watcher.start()
    observer.start()
    try:
        yield watcher
    finally:
        observer.stop()
        observer.join()
        watcher.stop()
