"""Read files of a folder without following links out of it.

A knowledge base cloned from someone else may hold symlinks (wiki/h.md -> ~/.ssh/id_rsa.md). Every file
loracle reads from a knowledge base is checked here first: it is read only when its real location (every
link on the way resolved) lies inside the folder it is read from. A link that stays inside that folder is
followed: it shows nothing the folder does not already show. A link that leaves it is refused, even one to
another part of the same knowledge base, such as loracle.toml (which may hold the server's token) or .loracle/.
"""

from __future__ import annotations

import os
from pathlib import Path

from loracle.errors import DocumentError


class OutsideLinkError(DocumentError):
    """A file is a link (or lies under a linked folder) whose target is outside the folder it is read from."""


def real_inside(path: Path, folder: Path) -> Path | None:
    """`path` with every link resolved, if that lies inside `folder` (itself resolved); else None."""
    real = os.path.realpath(path)
    root = os.path.realpath(folder)
    try:
        inside = os.path.commonpath([root, real]) == root
    except ValueError:  # different drives
        inside = False
    return Path(real) if inside else None


def confined(path: Path, folder: Path) -> Path:
    """The real path of `path`, refused with one line when a link leads it out of `folder`."""
    real = real_inside(path, folder)
    if real is None:
        raise OutsideLinkError(f"{path}: a link to a file outside {folder}; not read")
    return real


def read_bytes_in(path: Path, folder: Path) -> bytes:
    """The bytes of `path`, which must be a regular file inside `folder` (see `confined`): a pipe or device
    is refused rather than read (it could block, or never end)."""
    real = confined(path, folder)
    if real.exists() and not real.is_file():
        raise DocumentError(f"{path}: not a regular file; not read")
    return real.read_bytes()


def read_text_in(path: Path, folder: Path) -> str:
    """The UTF-8 text of `path`, which must lie inside `folder` (see `confined`)."""
    return read_bytes_in(path, folder).decode("utf-8")


def check_not_linked_out(folder: Path, root: Path) -> None:
    """Refuse a folder of a knowledge base that is a link to somewhere outside the knowledge base `root`."""
    if (folder.is_symlink() or folder.exists()) and real_inside(folder, root) is None:
        raise OutsideLinkError(f"{folder}: a link to {os.path.realpath(folder)}, outside the knowledge base {root}")
