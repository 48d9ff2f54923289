"""The records the search index takes and gives: pages in, hits out, and what a folder sync did."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from loracle.documents import content_hash

# Vectors see the title and the opening of the body (MiniLM truncates at 256 word pieces anyway).
EMBED_CHARS = 1500


@dataclass(frozen=True)
class IndexedPage:
    """What the index knows of a page. `path` is where the page lives (relative to its folder when synced)."""

    id: str
    title: str
    body: str
    path: str = ""
    kind: str = "page"
    aliases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    headings: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    @property
    def hash(self) -> str:
        fields = [self.title, self.body, str(self.path), self.kind, self.aliases, self.tags, self.headings, self.extra]
        return content_hash(json.dumps(fields, ensure_ascii=False, sort_keys=True, default=str))

    def embed_text(self) -> str:
        names = "; ".join((self.title, *self.aliases))
        return f"{names}\n{self.body}"[:EMBED_CHARS]


@dataclass(frozen=True)
class SearchHit:
    id: str
    title: str
    path: str
    score: float
    snippet: str
    bm25_rank: int | None
    vector_rank: int | None
    kind: str = "page"
    extra: dict = field(default_factory=dict)


@dataclass
class SyncReport:
    """What `sync_folder` did: ids added, updated and removed, how many were unchanged, and unreadable files."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)
    rebuilt: bool = False  # the database was unreadable or outdated and was rebuilt from the files
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


@dataclass(frozen=True)
class ChunkHit:
    """A retrieved chunk: where it comes from (document, lines) and how well it matched."""

    id: str  # the chunk's id in the index
    doc_id: str
    title: str
    text: str
    start_line: int
    end_line: int
    heading: str
    path: str
    score: float
    bm25_rank: int | None
    vector_rank: int | None
