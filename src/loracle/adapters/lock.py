"""One writer at a time: an advisory file lock that the OS releases when its holder dies (even by kill -9)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from loracle.errors import LoracleError

_THREAD_LOCKS: dict[Path, threading.Lock] = {}
_GUARD = threading.Lock()


class LockTimeout(LoracleError):
    """Another compile held the lock for longer than we were willing to wait."""


@contextlib.contextmanager
def exclusive_lock(path: Path, timeout_s: float = 600.0, poll_s: float = 0.05) -> Iterator[None]:
    """Hold `path` exclusively (between processes, and between threads of this process)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _GUARD:
        thread_lock = _THREAD_LOCKS.setdefault(path.resolve(), threading.Lock())
    if not thread_lock.acquire(timeout=timeout_s):
        raise LockTimeout(f"{path}: still locked by another compile in this process after {timeout_s:.0f} s")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                        raise LockTimeout(
                            f"{path}: another compile (pid {holder}) is running; waited {timeout_s:.0f} s"
                        ) from None
                    time.sleep(poll_s)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the flock
    finally:
        thread_lock.release()
