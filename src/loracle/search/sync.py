"""Keep the page index in step with a folder of markdown pages: add new, reindex changed, drop deleted."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loracle.confine import confined
from loracle.errors import LoracleError
from loracle.search.text import markdown_headings
from loracle.search.types import IndexedPage, SyncReport
from loracle.sources.files import read_text, split_frontmatter
from loracle.sources.folder import scan_source_files, source_id

if TYPE_CHECKING:
    from loracle.search.index import SearchIndex

# The wiki's own bookkeeping pages would match almost any query (index.md lists every page): not indexed.
WIKI_SPECIAL_PAGES = frozenset({"index.md", "log.md", "SCHEMA.md"})
SYNC_BATCH = 256
RACY_WINDOW_NS = 2_000_000_000


def page_from_markdown(text: str, relative: Path, path_for_errors: Path) -> IndexedPage:
    """An IndexedPage from a markdown file's text: frontmatter gives title, aliases, tags and type (as kind);
    the body without the frontmatter block is what gets searched."""
    meta, body = split_frontmatter(text, path_for_errors)
    title = str(meta.get("title") or _first_heading(body) or relative.stem)
    return IndexedPage(
        id=source_id(relative),
        title=title,
        body=body.strip(),
        path=relative.as_posix(),
        kind=str(meta.get("type") or "page"),
        aliases=_strings(meta.get("aliases", meta.get("alias"))),
        tags=tuple(t.lstrip("#") for t in _strings(meta.get("tags", meta.get("tag")))),
        headings=tuple(markdown_headings(body)),
    )


def sync_folder(index: SearchIndex, folder: Path, skip: frozenset[str] = WIKI_SPECIAL_PAGES) -> SyncReport:
    """Index every .md page under `folder` (hidden folders skipped); only changed pages are reindexed, pages
    whose file is gone are dropped, unreadable files are reported and keep their previous entry.

    A file whose size and modification time match the last sync is not even read; a file modified in the
    last few seconds is always read (two saves within the clock's resolution must not look unchanged).
    """
    started = time.perf_counter()
    if not folder.is_dir():
        raise LoracleError(f"{folder}: not a folder of pages")
    origin = str(folder.resolve())
    report = SyncReport(rebuilt=index.rebuilt)
    known = index.pages.ids_with_origin(origin)
    old_stamps = index.file_stamps(origin)
    new_stamps: dict[str, str] = {}
    seen: dict[str, str] = {}  # page id -> file
    batch: list[IndexedPage] = []
    for relative, entry in scan_source_files(folder, suffixes=(".md",)):
        if relative in skip:
            continue
        page_id = source_id(relative)
        if page_id in seen:
            report.errors.append(f"{entry.path}: same id {page_id!r} as {seen[page_id]}; not indexed")
            continue
        seen[page_id] = entry.path
        stamp = _stamp(entry)
        if page_id in known and stamp is not None and old_stamps.get(page_id) == stamp:
            report.unchanged += 1
            continue
        path = Path(entry.path)
        try:
            confined(path, folder)  # the scan skips links out of the folder; one made since is refused too
            page = page_from_markdown(read_text(path), Path(relative), path)
        except LoracleError as exc:
            report.errors.append(str(exc))
            continue
        if stamp is not None:
            new_stamps[page_id] = stamp
        if known.get(page_id) == page.hash:
            report.unchanged += 1
            continue
        (report.updated if page_id in known else report.added).append(page_id)
        batch.append(page)
        if len(batch) >= SYNC_BATCH:
            index.pages.upsert(batch, origin=origin)
            batch = []
    if batch:
        index.pages.upsert(batch, origin=origin)
    report.removed = sorted(set(known) - set(seen))
    index.pages.remove(report.removed)
    index.set_file_stamps(origin, new_stamps, forget=[i for i in old_stamps if i not in seen])
    report.seconds = time.perf_counter() - started
    return report


def _stamp(entry: os.DirEntry[str]) -> str | None:
    """size:mtime_ns of a file, or None when it was modified too recently to trust (or cannot be stat'ed)."""
    try:
        info = entry.stat()
    except OSError:
        return None
    if time.time_ns() - info.st_mtime_ns < RACY_WINDOW_NS:
        return None
    return f"{info.st_size}:{info.st_mtime_ns}"


def _strings(value: Any) -> tuple[str, ...]:
    """A frontmatter value that should be a list of strings (a lone string or scalar counts as one)."""
    if value is None:
        return ()
    items = value if isinstance(value, list | tuple) else [value]
    return tuple(str(v).strip() for v in items if v is not None and str(v).strip())


def _first_heading(body: str) -> str | None:
    for line in body.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return None
