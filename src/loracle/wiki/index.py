"""index.md (every page by type, one line each) and log.md (append-only history)."""

from __future__ import annotations

import datetime as dt

from loracle.atomic import write_text_atomic
from loracle.confine import read_text_in
from loracle.kb import KBPaths
from loracle.wiki.layout import INDEX_END, INDEX_START, INDEX_TEMPLATE, LOG_TEMPLATE, TYPE_HEADINGS
from loracle.wiki.links import SPECIAL_PAGES, LinkGraph, PageInfo
from loracle.wiki.state import WikiState

INDEX_KEY = "index.md"


def index_lines(pages: list[PageInfo]) -> list[str]:
    """The index block: a `### Type` group per page type, `- [[stem|Title]]: summary` per page, sorted by title."""
    groups: dict[str, list[PageInfo]] = {}
    for page in pages:
        groups.setdefault(page.type if page.type in TYPE_HEADINGS else "other", []).append(page)
    lines: list[str] = []
    for page_type in [*TYPE_HEADINGS, "other"]:
        members = sorted(groups.get(page_type, []), key=lambda p: (p.title.lower(), p.rel))
        if not members:
            continue
        lines.extend(["", f"### {TYPE_HEADINGS.get(page_type, 'Other pages')}", ""])
        for page in members:
            summary = " ".join(page.summary.split())
            lines.append(f"- [[{page.stem}|{_label(page.title)}]]" + (f": {summary}" if summary else ""))
    return lines


def _label(title: str) -> str:
    """A link label cannot hold `]]` or `|`."""
    return " ".join(title.replace("|", "/").replace("]]", "] ]").replace("[[", "[ [").split())


def rebuild_index(kb: KBPaths, state: WikiState) -> None:
    """Rewrite the block between the index markers; text outside it, and lines a person added inside it, stay."""
    path = kb.wiki / "index.md"
    text = read_text_in(path, kb.wiki) if path.exists() else INDEX_TEMPLATE
    if INDEX_START not in text or INDEX_END not in text:
        text = text.rstrip("\n") + f"\n\n{INDEX_START}\n{INDEX_END}\n"
    head, rest = text.split(INDEX_START, 1)
    block, tail = rest.split(INDEX_END, 1)
    graph = LinkGraph(kb.wiki)
    pages = [p for p in graph.pages.values() if p.rel not in SPECIAL_PAGES]
    new_lines = index_lines(pages)
    ours = set(state.lines_written(INDEX_KEY, "block", "*"))
    theirs = [line for line in block.strip("\n").splitlines() if line.strip() and line not in ours]
    theirs = [line for line in theirs if line not in new_lines]
    kept = ("\n" + "\n".join(theirs)) if theirs else ""
    write_text_atomic(path, f"{head}{INDEX_START}\n" + "\n".join(new_lines).strip("\n") + f"\n{INDEX_END}{kept}{tail}")
    state.record(INDEX_KEY, "block", "*", [line for line in new_lines if line.strip()])
    state.index_pending = False


def unindexed_pages(graph: LinkGraph) -> list[str]:
    """Content pages index.md does not link to (none when there is no index.md)."""
    if "index.md" not in graph.pages:
        return []
    listed = {dest for _, dest in graph.outgoing("index.md") if dest}
    return [page.rel for page in graph.content_pages() if page.rel not in listed]


def index_incomplete(kb: KBPaths) -> bool:
    """Whether index.md misses a page of the wiki (after a crash, or a page added by hand)."""
    return bool(unindexed_pages(LinkGraph(kb.wiki)))


def append_log(kb: KBPaths, action: str, title: str, details: list[str] | None = None) -> None:
    """Add `## [YYYY-MM-DD] action | Title` and its detail lines at the end of log.md."""
    path = kb.wiki / "log.md"
    text = read_text_in(path, kb.wiki) if path.exists() else LOG_TEMPLATE
    entry = f"## [{dt.date.today().isoformat()}] {action} | {' '.join(title.split())}"
    body = "\n".join(details or [])
    write_text_atomic(path, text.rstrip("\n") + f"\n\n{entry}\n" + (f"\n{body}\n" if body else ""))
