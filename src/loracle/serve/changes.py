"""Noticing that a folder changed, cheaply: one directory walk, no file reads."""

from __future__ import annotations

import os
from pathlib import Path


def folder_state(folder: Path) -> tuple:
    """Names, sizes and mtimes of the folder's files (hidden ones skipped): changes when any file does."""
    if not folder.is_dir():
        return ()
    entries = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            try:
                stat = os.stat(os.path.join(root, name))
            except FileNotFoundError:  # removed while we walked: it is a change, and the next look sees it
                continue
            entries.append((root, name, stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))
