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
from loracle.wiki.extract import Extraction, Written, blank_frontmatter, description_for, extract, one_line
from loracle.wiki.index import append_log, index_incomplete, rebuild_index
from loracle.wiki.layout import REMOVED_CALLOUT, UNSUPPORTED, page_rel
from loracle.wiki.linker import Linker, link
from loracle.wiki.merge import (
    MergeNotes,
    drop_from_list,
    merge_frontmatter,
    merge_list_section,
    merge_prose_section,
    merge_summary,
)
from loracle.wiki.names import mentioning
from loracle.wiki.pages import Page, Section, read_page_in, write_page
from loracle.wiki.sourcetext import plain_text
from loracle.wiki.state import SourceRecord, WikiState, load_state, save_state, wiki_lock
from loracle.wiki.support import SupportChecker

MAX_FACTS = 6  # fact lines one source gives one page
DESCRIBED_BY = "description.source"  # state key: the source whose sentence is a page's description


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
        summaries = _summary_names(kb, state, targets)
        for raw_path, key in targets:
            if progress is not None:
                progress(key)
            result = _ingest_one(kb, state, raw_path, key, writer, fast, summaries)
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


def _ingest_one(
    kb: KBPaths,
    state: WikiState,
    raw_path: Path,
    key: str,
    writer: LLM,
    fast: LLM,
    summaries: dict[str, tuple[str, str, str]],
) -> SourceResult:
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
        text = blank_frontmatter(raw_path.read_text(encoding="utf-8")) if _is_text(raw_path) else doc.text
        extraction = extract(doc, text, writer, fast)
        result.notes.extend(extraction.notes)
        result.status = "updated" if record and not record.removed else "added"
        _write_pages(kb, state, doc, key, extraction, result, summaries)
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
        for rel, meta in _pages_of_type(kb, page_type):
            aliases = meta.get("aliases") if isinstance(meta.get("aliases"), list) else []
            for name in (Path(rel).stem, str(meta.get("title") or ""), *(str(a) for a in aliases)):
                if name:
                    names.setdefault(name.lower(), rel)
    return names


def _pages_of_type(kb: KBPaths, page_type: str) -> list[tuple[str, dict]]:
    """(path under wiki/, frontmatter) of the pages in a page type's folder."""
    folder = Path(page_rel(page_type, "x")).parent
    found = []
    for name_in_folder, _ in scan_source_files(kb.wiki / folder, suffixes=(".md",)):
        if "/" in name_in_folder:
            continue  # pages of this type live at the top of their folder
        rel = (folder / name_in_folder).as_posix()
        found.append((rel, read_page_in(kb.wiki, rel).frontmatter))
    return found


def _summary_names(kb: KBPaths, state: WikiState, targets: list[tuple[Path, str]]) -> dict[str, tuple[str, str, str]]:
    """Lowercased title or alias -> (summary page, title, the name as written) for every source known or about
    to be ingested."""
    names: dict[str, tuple[str, str, str]] = {}
    for record in state.sources.values():
        if record.removed or not (kb.wiki / record.page).exists():
            continue
        meta = read_page_in(kb.wiki, record.page).frontmatter
        for name in (record.title, *_aliases_of(meta)):
            names.setdefault(name.lower(), (record.page, record.title, name))
    for raw_path, key in targets:
        try:
            doc = read_document(raw_path)
        except LoracleError:
            continue
        rel = _summary_page_for(state, key, doc.title)
        for name in (doc.title, *_aliases_of(doc.frontmatter)):
            names.setdefault(name.lower(), (rel, doc.title, name))
    return names


def _other_names(ex: Extraction, summaries: dict[str, tuple[str, str, str]]) -> dict[str, list[str]]:
    """Lowercased name -> its other names: those the source gives it, and the aliases of a source of that title."""
    found: dict[str, list[str]] = {}
    for key, (_, title, alias) in summaries.items():
        if key != title.lower():
            found.setdefault(title.lower(), []).append(alias)
    for name, aliases in ex.aliases.items():
        found.setdefault(name.lower(), []).extend(aliases)
    return found


def _aliases_of(meta: dict) -> list[str]:
    aliases = meta.get("aliases", meta.get("alias"))
    items = aliases if isinstance(aliases, list) else [aliases] if aliases else []
    return [" ".join(str(a).split()) for a in items if str(a).strip()]


def _page_for_name(
    names: dict[str, str], name: str, page_type: str, reserved: set[str], other_names: list[str] = ()
) -> str:
    """The page a name belongs to: an existing page with that stem, title or alias (or one of the name's other
    names: a page made for "Varga" before the source titled "Ilka Varga" came), else a new one."""
    stem = slugify(name)
    found = names.get(name.lower()) or names.get(stem)
    found = found or next((names[o.lower()] for o in other_names if o.lower() in names), None)
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
    kb: KBPaths,
    state: WikiState,
    doc: Document,
    key: str,
    ex: Extraction,
    result: SourceResult,
    summaries: dict[str, tuple[str, str, str]],
) -> None:
    notes = MergeNotes()
    date = today()
    summary_rel = _summary_page_for(state, key, doc.title)
    reserved = {Path(r.page).stem for r in state.sources.values()} | {Path(summary_rel).stem}
    named: list[tuple[str, str, str]] = []  # (name, page type, rel)
    names = _names_to_pages(kb)
    other_names = _other_names(ex, summaries)
    for name, page_type in [*((e, "entity") for e in ex.entities), *((c, "concept") for c in ex.concepts)]:
        known = summaries.get(name.lower())
        if known is not None and known[1].lower() != name.lower():
            name = known[1]  # a source's alias ("Varga") means the page of its title ("Ilse Varga")
        rel = _page_for_name(names, name, page_type, reserved, other_names.get(name.lower(), []))
        if rel not in (r for _, _, r in named):
            named.append((name, page_type, rel))
    linker = Linker()
    for name, _, rel in named:
        for form in (name, *other_names.get(name.lower(), [])):
            linker.add(form, rel)
    for name, rel in names.items():
        linker.add(name, rel)
    for name, (rel, _, _) in summaries.items():
        linker.add(name, rel)
    linker.add(doc.title, summary_rel)

    # entity and concept pages: a description, the facts with their lines, related pages
    checker = SupportChecker(ex.sentences)
    source_link = link(summary_rel, doc.title)
    doc_names = {doc.title.lower(), *(a.lower() for a in _aliases_of(doc.frontmatter))}
    touched: list[str] = []
    for name, page_type, rel in named:
        forms = list(dict.fromkeys([name, *other_names.get(name.lower(), [])]))
        said = mentioning(forms, ex.sentences)
        facts = [f"- {linker.rewrite(s.text)} ({source_link}, `{key}:{s.line}`)" for s in said[:MAX_FACTS]]
        related = [f"- {link(other, o)}" for o, _, other in named if other != rel and mentioning([o], said)]
        about = summaries.get(name.lower())
        if about is not None:
            related.insert(0, f"- {link(about[0], about[1])}")
        description = description_for(name, said, checker, ex.shortened)
        page = _load_or_new(kb, rel, name)
        merge_frontmatter(page, {"title": name, "type": page_type}, {"aliases": forms, "sources": [key]})
        _merge_description(page, rel, key, description, linker, name.lower() in doc_names, state, notes)
        page.frontmatter["updated"] = date
        merge_list_section(page, rel, "Facts", key, facts, state)
        merge_list_section(page, rel, "Related", key, list(dict.fromkeys(related)), state, after="Facts")
        _drop_old_mentions(page, rel, key, state)
        _clear_removed_flag(page)
        write_page(kb.wiki / rel, page)
        touched.append(rel)

    # pages this source used to feed but no longer does lose its lines
    previous = state.sources.get(key)
    for rel in previous.pages if previous else []:
        if rel not in touched and (kb.wiki / rel).exists():
            page = read_page_in(kb.wiki, rel)
            for heading in ("Facts", "Related"):
                merge_list_section(page, rel, heading, key, [], state)
            _merge_description(page, rel, key, None, linker, False, state, notes)
            _drop_old_mentions(page, rel, key, state)
            drop_from_list(page, "sources", key)
            write_page(kb.wiki / rel, page)

    # the source's summary page
    page = _load_or_new(kb, summary_rel, doc.title)
    tags = [str(t) for t in doc.frontmatter.get("tags") or []] if isinstance(doc.frontmatter.get("tags"), list) else []
    aliases = [doc.title, *_aliases_of(doc.frontmatter)]
    lists = {"aliases": aliases, "tags": tags, "sources": [key]}
    merge_frontmatter(page, {"title": doc.title, "type": "source"}, lists)
    merge_summary(page, summary_rel, ex.one_line, state, notes)
    page.frontmatter["updated"] = date
    merge_prose_section(page, summary_rel, "Summary", linker.rewrite(ex.summary_text), state, notes)
    entity_lines = [f"- {link(rel, name)}" for name, t, rel in named if t == "entity"]
    concept_lines = [f"- {link(rel, name)}" for name, t, rel in named if t == "concept"]
    merge_list_section(page, summary_rel, "Entities", key, entity_lines, state, after="Summary")
    merge_list_section(page, summary_rel, "Concepts", key, concept_lines, state, after="Entities")
    source_text = f"- file: `{key}`\n- content hash: `{doc.hash[:16]}`\n- ingested: {date}"
    merge_prose_section(page, summary_rel, "Source", source_text, state, notes)
    _clear_removed_flag(page)
    write_page(kb.wiki / summary_rel, page)

    state.sources[key] = SourceRecord(hash=doc.hash, title=doc.title, page=summary_rel, pages=touched, ingested=date)
    result.page, result.pages = summary_rel, touched
    result.notes.extend(f"kept your edit in {where}" for where in notes.kept)


def _merge_description(
    page: Page,
    rel: str,
    key: str,
    description: Written | None,
    linker: Linker,
    about: bool,
    state: WikiState,
    notes: MergeNotes,
) -> None:
    """The page's description comes from one source: the first to describe it, or later one about it by title.

    The source that wrote it rewrites it (or, with None, takes it back); a person's edit is kept.
    """
    owners = state.lines_written(rel, DESCRIBED_BY, "*")
    owner = owners[0] if owners else ""
    if owner and owner != key and not (about and description is not None):
        return
    if description is None and owner != key:
        return
    text = linker.rewrite(description.markdown) if description is not None else ""
    before = list(notes.kept)
    merge_prose_section(page, rel, "Description", text, state, notes, after="")
    if notes.kept != before:
        return
    if description is None:
        page.sections = [s for s in page.sections if s.heading != "Description" or s.text.strip()]
        if str(page.frontmatter.get("summary") or "") in ("", *state.lines_written(rel, "frontmatter.summary", "*")):
            page.frontmatter.pop("summary", None)  # loracle's one-liner goes with its description; a person's stays
        state.record(rel, DESCRIBED_BY, "*", [])
        state.record(rel, "frontmatter.summary", "*", [])
        return
    merge_summary(page, rel, one_line(plain_text(description.text)), state, notes)
    state.record(rel, DESCRIBED_BY, "*", [key])


def _drop_old_mentions(page: Page, rel: str, key: str, state: WikiState) -> None:
    """Take this source's lines out of a `Mentions` section written before pages had facts; drop it when empty."""
    if page.section("Mentions") is None:
        return
    merge_list_section(page, rel, "Mentions", key, [], state)
    page.sections = [s for s in page.sections if s.heading != "Mentions" or s.text.strip()]


def _is_text(path: Path) -> bool:
    return path.suffix.lower() in (".md", ".markdown", ".txt", ".text")


def _load_or_new(kb: KBPaths, rel: str, title: str) -> Page:
    if (kb.wiki / rel).exists():
        return read_page_in(kb.wiki, rel)
    return Page({}, [Section("", f"# {title}")])


def _set_callout(page: Page, callout: str | None) -> None:
    """Add (or with None, drop) the removed-source warning in the text above the first section."""
    if not page.sections or page.sections[0].heading != "":
        page.sections.insert(0, Section("", ""))
    intro = page.sections[0]
    lines = [line for line in intro.text.split("\n") if not line.startswith(REMOVED_CALLOUT)]
    text = "\n".join(lines).strip("\n")
    intro.text = f"{text}\n\n{callout}".strip("\n") if callout else text


def _clear_removed_flag(page: Page) -> None:
    if page.frontmatter.get("status") == UNSUPPORTED:  # loracle's flag; a person's own status stays
        page.frontmatter.pop("status")
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
        listed = page.frontmatter.get("sources")
        others = [s for s in listed if s != key and s in state.sources] if isinstance(listed, list) else []
        others = [s for s in others if not state.sources[s].removed]
        if rel == record.page or not others:
            page.frontmatter.setdefault("status", UNSUPPORTED)  # the callout flags a page with a person's status
            _set_callout(page, callout)
            flagged.append(rel)
        write_page(path, page)
    record.removed = True
    result.pages = flagged
    append_log(kb, "remove", record.title, [f"- source: `{key}`", *(f"- flagged: [[{Path(r).stem}]]" for r in flagged)])
    return result
