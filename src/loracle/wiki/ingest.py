"""Ingest sources into the wiki: copy into raw/, summarise, extract names, write and merge pages, index, log.

Per source: a summary page (sources/), an entity or concept page per supported name (entities/,
concepts/), links both ways, the index regenerated and a log entry appended. Unchanged sources are
skipped by content hash; a changed source replaces only its own lines; a removed source is logged and
the claims only it supported are flagged. Everything runs under the wiki lock and writes atomically.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loracle.atomic import remove_leftover_files, write_bytes_atomic
from loracle.confine import OutsideLinkError, real_inside
from loracle.crash import crash_point
from loracle.documents import Document, content_hash, slugify
from loracle.errors import LoracleError
from loracle.kb import KBPaths
from loracle.llm import LLM
from loracle.sources import iter_source_files, read_document
from loracle.sources.folder import scan_source_files
from loracle.wiki.extract import Extraction, blank_frontmatter, extract, find_mention
from loracle.wiki.index import append_log, index_incomplete, rebuild_index
from loracle.wiki.layout import page_rel
from loracle.wiki.merge import MergeNotes, merge_frontmatter, merge_list_section, merge_prose_section, merge_summary
from loracle.wiki.pages import Page, Section, read_page_in, write_page
from loracle.wiki.state import SourceRecord, WikiState, load_state, save_state, wiki_lock

REMOVED_CALLOUT = "> [!warning] Source removed"


@dataclass
class SourceResult:
    source: str  # path relative to the KB root
    title: str = ""
    status: str = ""  # added, updated, unchanged, removed, failed
    page: str = ""
    pages: list[str] = field(default_factory=list)
    llm_calls: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class IngestReport:
    results: list[SourceResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> list[SourceResult]:
        return [r for r in self.results if r.status == "failed"]


def today() -> str:
    return dt.date.today().isoformat()


def ingest(kb: KBPaths, paths: Sequence[Path], writer: LLM, fast: LLM | None = None, progress=None) -> IngestReport:
    """Copy `paths` (files or folders) into raw/ and bring the wiki up to date with every source there."""
    fast = fast or writer
    report = IngestReport()
    with wiki_lock(kb):
        remove_leftover_files(kb.wiki)  # of a crashed run: only writers holding this lock write there
        remove_leftover_files(kb.state, recursive=False)
        state = load_state(kb)
        targets: list[tuple[Path, str]] = []
        for path in paths:
            try:
                staged, refused = _stage(kb, path)
            except LoracleError as exc:
                report.results.append(SourceResult(str(path), status="failed", error=str(exc)))
                continue
            targets.extend(staged)
            report.results.extend(SourceResult(str(p), status="failed", error=e) for p, e in refused)
        crash_point("ingest-raw-copied")
        for raw_path, key in targets:
            if progress is not None:
                progress(key)
            result = _ingest_one(kb, state, raw_path, key, writer, fast)
            report.results.append(result)
            crash_point("ingest-pages-written")
            _commit(kb, state, result)
        for key in _removed_sources(kb, state):
            result = _remove_source(kb, state, key)
            report.results.append(result)
            _commit(kb, state, result)
        if state.index_pending or index_incomplete(kb):
            rebuild_index(kb, state)
            crash_point("ingest-index-written")
            save_state(kb, state)
    return report


def _commit(kb: KBPaths, state: WikiState, result: SourceResult) -> None:
    """Save the state after one source; a source that changed pages also marks the index as owed in the same
    write, so a crash before the index is rebuilt is repaired by the next ingest (and reported by status)."""
    changed = result.status in ("added", "updated", "removed")
    state.index_pending = state.index_pending or changed
    save_state(kb, state)
    if changed:
        crash_point("ingest-source-saved")


def _stage(kb: KBPaths, path: Path) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """The raw/ copies of a file or folder (copied in unless they already live in raw/), with their keys;
    and the files refused because they cannot be read (those are never copied). A path given inside the
    knowledge base is read only from raw/, never through a link out of it."""
    path = path.expanduser()
    if not path.exists():
        raise LoracleError(f"{path}: no such file or folder")
    resolved, root = path.resolve(), kb.root.resolve()
    inside_raw = real_inside(path, kb.raw) is not None
    if not inside_raw and _named_inside(path, root) and not resolved.is_relative_to(root):
        raise OutsideLinkError(f"{path}: a link to {resolved}, outside the knowledge base; not read")
    if not inside_raw and (root.is_relative_to(resolved) or resolved.is_relative_to(root)):
        raise LoracleError(f"{path}: part of the knowledge base itself; ingest sources from elsewhere or from raw/")
    if path.is_dir():
        files = list(iter_source_files(path))
        if not files:
            raise LoracleError(f"{path}: no sources in it (markdown, text, HTML or PDF)")
        base = Path(".") if inside_raw else Path(slugify(resolved.name))
        pairs = [(file, base / file.relative_to(path)) for file in files]
    else:
        pairs = [(path, Path(path.name))]
    staged, refused = [], []
    for file, relative in pairs:
        try:
            read_document(file)
        except LoracleError as exc:
            refused.append((file, str(exc)))
            continue
        if inside_raw:
            dest = file.resolve()
        else:
            dest = kb.raw / _safe_relative(relative)
            data = file.read_bytes()
            if not dest.exists() or dest.read_bytes() != data:
                write_bytes_atomic(dest, data)
                shutil.copystat(file, dest)
        staged.append((dest, dest.relative_to(kb.root.resolve() if inside_raw else kb.root).as_posix()))
    return staged, refused


def _named_inside(path: Path, root: Path) -> bool:
    """Whether `path`, as written (its own links not followed), names something inside the folder `root`."""
    for folder in Path(os.path.abspath(path)).parents:
        with contextlib.suppress(OSError):
            if os.path.samefile(folder, root):
                return True
    return False


def _safe_relative(relative: Path) -> Path:
    """A path under raw/ made of safe names only (a source's own name can never climb out)."""
    parts = [slugify(Path(p).stem if i == len(relative.parts) - 1 else p) for i, p in enumerate(relative.parts)]
    suffix = relative.suffix.lower()[:10]
    return Path(*parts[:-1], parts[-1] + suffix)


def _ingest_one(kb: KBPaths, state: WikiState, raw_path: Path, key: str, writer: LLM, fast: LLM) -> SourceResult:
    result = SourceResult(key)
    started = time.perf_counter()
    before = writer.usage(), fast.usage()
    try:
        doc = read_document(raw_path)
        result.title = doc.title
        record = state.sources.get(key)
        if record and record.hash == doc.hash and not record.removed and (kb.wiki / record.page).exists():
            result.status, result.page = "unchanged", record.page
            return result
        extraction = extract(doc, writer, fast)
        result.notes.extend(extraction.notes)
        result.status = "updated" if record and not record.removed else "added"
        _write_pages(kb, state, doc, key, raw_path, extraction, result)
        append_log(kb, "ingest", doc.title, _log_details(result))
    except LoracleError as exc:
        result.status, result.error = "failed", str(exc)
    except OSError as exc:
        result.status, result.error = "failed", f"{raw_path}: {exc.strerror or exc}"
    finally:
        result.seconds = time.perf_counter() - started
        if writer is fast:
            result.llm_calls = (writer.usage() - before[0]).calls
        else:
            result.llm_calls = (writer.usage() - before[0]).calls + (fast.usage() - before[1]).calls
    return result


def _log_details(result: SourceResult) -> list[str]:
    lines = [
        f"- source: `{result.source}` ({'new' if result.status == 'added' else 'changed'})",
        f"- summary page: [[{Path(result.page).stem}]]",
    ]
    if result.pages:
        lines.append("- pages: " + ", ".join(f"[[{Path(p).stem}]]" for p in result.pages))
    lines.extend(f"- note: {note}" for note in result.notes)
    return lines


def _names_to_pages(kb: KBPaths) -> dict[str, str]:
    """Every entity and concept page by its lowercased title, aliases and file stem."""
    names: dict[str, str] = {}
    for page_type in ("entity", "concept"):
        folder = Path(page_rel(page_type, "x")).parent
        for name_in_folder, _ in scan_source_files(kb.wiki / folder, suffixes=(".md",)):
            if "/" in name_in_folder:
                continue  # pages of this type live at the top of their folder
            rel = (folder / name_in_folder).as_posix()
            meta = read_page_in(kb.wiki, rel).frontmatter
            aliases = meta.get("aliases") if isinstance(meta.get("aliases"), list) else []
            for name in (Path(rel).stem, str(meta.get("title") or ""), *(str(a) for a in aliases)):
                if name:
                    names.setdefault(name.lower(), rel)
    return names


def _page_for_name(names: dict[str, str], name: str, page_type: str, reserved: set[str]) -> str:
    """The page a name belongs to: an existing page with that stem, title or alias, else a new one."""
    stem = slugify(name)
    found = names.get(name.lower()) or names.get(stem)
    if found:
        return found
    if stem in reserved:
        stem = slugify(f"{name} {page_type}")
    return page_rel(page_type, stem)


def _summary_page_for(state: WikiState, key: str, title: str) -> str:
    record = state.sources.get(key)
    if record is not None:
        return record.page
    taken = {r.page for r in state.sources.values()}
    rel = page_rel("source", f"{slugify(title, 70)}-summary")
    if rel in taken:
        rel = page_rel("source", f"{slugify(title, 60)}-{content_hash(key)[:6]}-summary")
    return rel


def _write_pages(
    kb: KBPaths, state: WikiState, doc: Document, key: str, raw_path: Path, ex: Extraction, result: SourceResult
) -> None:
    notes = MergeNotes()
    date = today()
    summary_rel = _summary_page_for(state, key, doc.title)
    summary_stem = Path(summary_rel).stem
    raw_text = blank_frontmatter(raw_path.read_text(encoding="utf-8")) if _is_text(raw_path) else doc.text
    reserved = {Path(r.page).stem for r in state.sources.values()} | {summary_stem}
    named: list[tuple[str, str, str]] = []  # (name, page type, rel)
    names = _names_to_pages(kb)
    for name, page_type in [*((e, "entity") for e in ex.entities), *((c, "concept") for c in ex.concepts)]:
        rel = _page_for_name(names, name, page_type, reserved)
        if rel not in (r for _, _, r in named):
            named.append((name, page_type, rel))

    # entity and concept pages: one "Mentions" line per source, linking back to the summary page
    touched: list[str] = []
    for name, page_type, rel in named:
        mention = find_mention(name, raw_text)
        where = f"`{key}:{mention.line}`" if mention else f"`{key}`"
        quote = f': "{mention.sentence}"' if mention else ""
        line = f"- [[{summary_stem}|{doc.title}]]{quote} ({where})"
        page = _load_or_new(kb, rel, name)
        merge_frontmatter(page, {"title": name, "type": page_type}, {"aliases": [], "sources": [key]})
        _add_alias(page, name)
        merge_summary(page, rel, mention.sentence if mention else f"Mentioned in {doc.title}.", state, notes)
        page.frontmatter["updated"] = date
        merge_list_section(page, rel, "Mentions", key, [line], state)
        _clear_removed_flag(page)
        write_page(kb.wiki / rel, page)
        touched.append(rel)

    # pages this source used to feed but no longer does lose its lines
    previous = state.sources.get(key)
    for rel in previous.pages if previous else []:
        if rel not in touched and (kb.wiki / rel).exists():
            page = read_page_in(kb.wiki, rel)
            merge_list_section(page, rel, "Mentions", key, [], state)
            page.frontmatter["sources"] = [s for s in page.frontmatter.get("sources") or [] if s != key]
            write_page(kb.wiki / rel, page)

    # the source's summary page
    page = _load_or_new(kb, summary_rel, doc.title)
    tags = [str(t) for t in doc.frontmatter.get("tags") or []] if isinstance(doc.frontmatter.get("tags"), list) else []
    merge_frontmatter(page, {"title": doc.title, "type": "source"}, {"aliases": [], "tags": tags, "sources": [key]})
    merge_summary(page, summary_rel, ex.one_line, state, notes)
    page.frontmatter["updated"] = date
    merge_prose_section(page, summary_rel, "Summary", ex.summary, state, notes)
    entity_lines = [f"- [[{Path(rel).stem}|{name}]]" for name, t, rel in named if t == "entity"]
    concept_lines = [f"- [[{Path(rel).stem}|{name}]]" for name, t, rel in named if t == "concept"]
    merge_list_section(page, summary_rel, "Entities", key, entity_lines, state, after="Summary")
    merge_list_section(page, summary_rel, "Concepts", key, concept_lines, state, after="Entities")
    source_text = f"- file: `{key}`\n- content hash: `{doc.hash[:16]}`\n- ingested: {date}"
    merge_prose_section(page, summary_rel, "Source", source_text, state, notes)
    _clear_removed_flag(page)
    write_page(kb.wiki / summary_rel, page)

    state.sources[key] = SourceRecord(hash=doc.hash, title=doc.title, page=summary_rel, pages=touched, ingested=date)
    result.page, result.pages = summary_rel, touched
    result.notes.extend(f"kept your edit in {where}" for where in notes.kept)


def _is_text(path: Path) -> bool:
    return path.suffix.lower() in (".md", ".markdown", ".txt", ".text")


def _load_or_new(kb: KBPaths, rel: str, title: str) -> Page:
    if (kb.wiki / rel).exists():
        return read_page_in(kb.wiki, rel)
    return Page({}, [Section("", f"# {title}")])


def _add_alias(page: Page, name: str) -> None:
    title = str(page.frontmatter.get("title", ""))
    aliases = [str(a) for a in page.frontmatter.get("aliases") or []]
    if name.lower() != title.lower() and name.lower() not in (a.lower() for a in aliases):
        aliases.append(name)
    page.frontmatter["aliases"] = aliases


def _set_callout(page: Page, callout: str | None) -> None:
    """Add (or with None, drop) the removed-source warning in the text above the first section."""
    if not page.sections or page.sections[0].heading != "":
        page.sections.insert(0, Section("", ""))
    intro = page.sections[0]
    lines = [line for line in intro.text.split("\n") if not line.startswith(REMOVED_CALLOUT)]
    text = "\n".join(lines).strip("\n")
    intro.text = f"{text}\n\n{callout}".strip("\n") if callout else text


def _clear_removed_flag(page: Page) -> None:
    page.frontmatter.pop("status", None)
    _set_callout(page, None)


def _removed_sources(kb: KBPaths, state: WikiState) -> list[str]:
    return [key for key, record in state.sources.items() if not record.removed and not (kb.root / key).exists()]


def _remove_source(kb: KBPaths, state: WikiState, key: str) -> SourceResult:
    """Log a vanished source, flag its summary page, and flag pages that no other source supports."""
    record = state.sources[key]
    result = SourceResult(key, title=record.title, status="removed", page=record.page)
    callout = f"{REMOVED_CALLOUT} on {today()}: `{key}` no longer exists; claims below that cite it are unsupported."
    flagged = []
    for rel in [record.page, *record.pages]:
        path = kb.wiki / rel
        if not path.exists():
            continue
        page = read_page_in(kb.wiki, rel)
        others = [s for s in page.frontmatter.get("sources") or [] if s != key and s in state.sources]
        others = [s for s in others if not state.sources[s].removed]
        if rel == record.page or not others:
            page.frontmatter["status"] = "unsupported"
            _set_callout(page, callout)
            flagged.append(rel)
        write_page(path, page)
    record.removed = True
    result.pages = flagged
    append_log(kb, "remove", record.title, [f"- source: `{key}`", *(f"- flagged: [[{Path(r).stem}]]" for r in flagged)])
    return result
