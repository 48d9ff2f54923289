"""Atomic writes: a crash leaves either the old file or folder or the new one, never half of either."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from loracle.crash import crash_point

#: the name mkstemp gives `write_bytes_atomic`'s temporary file
_LEFTOVER_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        crash_point("file-replace")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield a staging folder beside `target`; on success it replaces `target` in one rename.

    A replaced old folder is renamed aside first and removed after, so readers see the old
    folder or the new one. Staging folders start with '.' so stores can ignore leftovers of a crash.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_stagings(target)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.staging-{os.getpid()}-"))
    try:
        yield staging
        replace_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def holds_other_data(target: Path, marker: str) -> bool:
    """Whether replacing `target` whole (`atomic_folder`) would destroy something other than a folder of the
    kind being written, which always holds the file `marker`: a file, or a non-empty folder without it."""
    return target.exists() and not (target / marker).is_file() and (not target.is_dir() or any(target.iterdir()))


def _remove_dead_stagings(target: Path) -> None:
    """Delete staging folders for `target` that a process which has since died (a crash) left behind."""
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.staging-*"):
        pid = leftover.name.rsplit(".staging-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftover_files(folder: Path, recursive: bool = True) -> list[Path]:
    """Delete the temporary files a crash left beside their targets in `write_bytes_atomic` (hidden, named
    .<target>.<8 random characters>.tmp). Call it only while holding the lock every writer there holds."""
    found = folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp")
    leftovers = [path for path in found if _LEFTOVER_RE.match(path.name) and path.is_file()]
    for path in leftovers:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return leftovers


def replace_folder(staging: Path, target: Path) -> None:
    """Put the finished folder `staging` at `target` in one step: an old `target` is swapped with it atomically
    (Linux renameat2 RENAME_EXCHANGE), then removed. Where the swap is not available the old folder is renamed
    aside first; a crash between the two renames leaves it as .<name>.old-<pid> (see `restore_folder`)."""
    crash_point("folder-swap")
    if target.exists() and _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the old folder
        return
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def restore_folder(target: Path) -> bool:
    """Put back an old folder a crash left renamed aside by `replace_folder` when `target` itself is missing."""
    if target.exists():
        return False
    for old in sorted(target.parent.glob(f".{glob.escape(target.name)}.old-*")):
        if old.is_dir():
            os.replace(old, target)
            return True
    return False


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux 3.15+, glibc 2.28+); False where the system or file system can't."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
