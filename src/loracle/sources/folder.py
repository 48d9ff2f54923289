"""Read a whole folder of sources: every supported file, recursively, each bad file reported and skipped; a
`DocumentSource` is where compilation reads documents from, `FolderSource` the one over a folder."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from loracle.confine import real_inside
from loracle.documents import Document, slugify
from loracle.errors import LoracleError
from loracle.sources.files import SUPPORTED_SUFFIXES, read_document


@dataclass(frozen=True)
class SourceError:
    """A file that could not be read, and why (one line that names the file)."""

    path: Path
    message: str

    def __str__(self) -> str:
        return self.message


def source_id(relative: Path | str) -> str:
    """A stable, safe id for a source from its path relative to the folder read ("notes/A b.md" -> "notes-a-b")."""
    text = relative.replace(os.sep, "/") if isinstance(relative, str) else Path(relative).as_posix()
    head, suffix = posixpath.splitext(text)
    return slugify(text if suffix in ("", ".") else head)


def scan_source_files(
    folder: Path, suffixes: tuple[str, ...] | None = SUPPORTED_SUFFIXES
) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """(relative posix path, directory entry) of every file under `folder` with a supported suffix (any file when
    `suffixes` is None): a folder's files in name order, then its subfolders. Hidden files and folders (including
    the knowledge base's own .loracle/) are never entered, symlinked folders are not followed, and symlinked files
    that lead outside `folder` are skipped (see loracle.confine). Entries carry their `stat()`, so a sync of
    10,000 files stays cheap."""
    yield from _scan(str(folder), "", suffixes, folder)


def _scan(
    directory: str, prefix: str, suffixes: tuple[str, ...] | None, root: Path
) -> Iterator[tuple[str, os.DirEntry[str]]]:
    try:
        with os.scandir(directory) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError:
        return
    subfolders = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                subfolders.append(entry)
                continue
            if suffixes is not None and posixpath.splitext(entry.name)[1].lower() not in suffixes:
                continue
            if entry.is_symlink():
                if not entry.is_file() or real_inside(Path(entry.path), root) is None:
                    continue
            elif not entry.is_file(follow_symlinks=False):
                continue
        except (OSError, ValueError):
            continue
        yield prefix + entry.name, entry
    for sub in subfolders:
        yield from _scan(sub.path, f"{prefix}{sub.name}/", suffixes, root)


def iter_source_files(folder: Path, suffixes: tuple[str, ...] = SUPPORTED_SUFFIXES) -> Iterator[Path]:
    """Paths of the files `scan_source_files` finds (same rules, same order)."""
    for _, entry in scan_source_files(folder, suffixes):
        yield Path(entry.path)


def read_folder(folder: Path) -> tuple[list[Document], list[SourceError]]:
    """Every readable source under `folder` as a Document (id from its relative path), plus one error per
    file that could not be read. A single file is read as a folder of one."""
    if folder.is_file():
        return _read_one(folder, folder.name)
    if not folder.is_dir():
        return [], [SourceError(folder, f"{folder}: no such file or folder")]
    documents: list[Document] = []
    errors: list[SourceError] = []
    seen: dict[str, Path] = {}
    for path in iter_source_files(folder):
        relative = path.relative_to(folder)
        docs, errs = _read_one(path, relative)
        errors.extend(errs)
        for doc in docs:
            if doc.id in seen:
                errors.append(SourceError(path, f"{path}: same id {doc.id!r} as {seen[doc.id]}; skipped"))
                continue
            seen[doc.id] = path
            documents.append(doc)
    return documents, errors


def _read_one(path: Path, relative: Path | str) -> tuple[list[Document], list[SourceError]]:
    try:
        return [read_document(path, doc_id=source_id(relative))], []
    except LoracleError as exc:
        return [], [SourceError(path, str(exc))]
    except (OSError, RecursionError, MemoryError) as exc:
        return [], [SourceError(path, f"{path}: unreadable ({type(exc).__name__}: {exc})")]


@runtime_checkable
class DocumentSource(Protocol):
    """Where documents come from. `name` is recorded in manifests ("raw", "wiki"), so a compile from one
    source never removes the adapters of another."""

    name: str
    root: Path

    def read_all(self) -> tuple[list[Document], list[SourceError]]: ...

    def doc_id(self, path: Path) -> str | None:
        """The id a file under `root` has (None: not a document of this source)."""
        ...

    def read(self, path: Path) -> Document:
        """One file as a Document (a DocumentError naming the file if it can't be read)."""
        ...


class FolderSource:
    """Every supported file under a folder (markdown, text, HTML, PDF), ids from relative paths."""

    def __init__(self, name: str, root: Path, skip_ids: Iterable[str] = ()) -> None:
        self.name = name
        self.root = Path(root)
        self.skip_ids = frozenset(skip_ids)

    def read_all(self) -> tuple[list[Document], list[SourceError]]:
        docs, errors = read_folder(self.root)
        return [d for d in docs if d.id not in self.skip_ids], errors

    def doc_id(self, path: Path) -> str | None:
        try:
            relative = path.resolve().relative_to(self.root.resolve())
        except ValueError:
            return None
        if any(part.startswith(".") for part in relative.parts) or path.suffix.lower() not in SUPPORTED_SUFFIXES:
            return None  # editor swap and backup files, hidden folders
        doc_id = source_id(relative)
        return None if doc_id in self.skip_ids else doc_id

    def read(self, path: Path) -> Document:
        return read_document(path, doc_id=self.doc_id(path))

    def paths(self) -> list[Path]:
        return list(iter_source_files(self.root))
