"""What a knowledge base holds and what is stale: sources, pages by type, links, changes not yet ingested."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from loracle.documents import content_hash
from loracle.errors import LoracleError
from loracle.kb import KBPaths
from loracle.sources import iter_source_files, read_document
from loracle.wiki.index import unindexed_pages
from loracle.wiki.links import LinkGraph
from loracle.wiki.state import load_state


@dataclass
class WikiStatus:
    sources: int = 0
    removed_sources: int = 0
    pages: dict[str, int] = field(default_factory=dict)
    links: int = 0
    links_resolved: int = 0
    new_sources: list[str] = field(default_factory=list)  # in raw/ but never ingested
    changed_sources: list[str] = field(default_factory=list)  # changed since they were ingested
    missing_sources: list[str] = field(default_factory=list)  # ingested, now gone (not yet logged as removed)
    unsupported_pages: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    unindexed_pages: list[str] = field(default_factory=list)  # pages index.md does not list

    @property
    def stale(self) -> bool:
        return bool(self.new_sources or self.changed_sources or self.missing_sources or self.unindexed_pages)

    def to_json(self) -> dict:
        return asdict(self) | {"stale": self.stale}


def wiki_status(kb: KBPaths) -> WikiStatus:
    """Read-only: never takes the lock and never writes."""
    if not kb.wiki.is_dir():
        raise LoracleError(f"{kb.wiki}: no wiki folder (run `loracle init {kb.root}`)")
    state = load_state(kb)
    status = WikiStatus()
    status.sources = sum(not r.removed for r in state.sources.values())
    status.removed_sources = sum(r.removed for r in state.sources.values())
    graph = LinkGraph(kb.wiki)
    for page in graph.content_pages():
        status.pages[page.type or "other"] = status.pages.get(page.type or "other", 0) + 1
        if page.unsupported:
            status.unsupported_pages.append(page.rel)
    status.links_resolved, status.links = graph.link_counts()
    status.unindexed_pages = unindexed_pages(graph)
    seen = set()
    for path in iter_source_files(kb.raw) if kb.raw.is_dir() else []:
        key = path.relative_to(kb.root).as_posix()
        seen.add(key)
        record = state.sources.get(key)
        try:
            text = read_document(path).text  # a file ingest would refuse is unreadable, not new
        except LoracleError as exc:
            status.unreadable.append(str(exc))
            continue
        if record is None or record.removed:
            status.new_sources.append(key)
        elif content_hash(text) != record.hash:
            status.changed_sources.append(key)
    status.missing_sources = [k for k, r in state.sources.items() if not r.removed and k not in seen]
    return status
