"""Read a whole folder of sources: every supported file, recursively, each bad file reported and skipped."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

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
    parts = PurePosixPath(Path(relative).as_posix())
    return slugify(str(parts.with_suffix("")) if parts.suffix else str(parts))


def iter_source_files(folder: Path, suffixes: tuple[str, ...] = SUPPORTED_SUFFIXES) -> Iterator[Path]:
    """Files under `folder` with a supported suffix, in a stable order. Hidden files and folders (including
    the knowledge base's own .loracle/) are never entered; symlinks that lead outside `folder` are skipped."""
    root = folder.resolve()
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(current) / name
            if name.startswith(".") or path.suffix.lower() not in suffixes:
                continue
            try:  # os.walk does not enter symlinked folders, so only a symlinked file can lead outside
                if not path.is_file() or (path.is_symlink() and not path.resolve().is_relative_to(root)):
                    continue
            except OSError:
                continue
            yield path


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
