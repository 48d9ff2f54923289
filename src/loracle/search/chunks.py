"""Chunk-level retrieval on the same index: the context learner asks for the passages that answer a question."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from loracle.search.types import ChunkHit, IndexedPage
from loracle.sources.chunking import Chunk

if TYPE_CHECKING:
    from loracle.search.index import SearchIndex


def _origin(doc_id: str) -> str:
    return f"doc:{doc_id}"


def _as_page(chunk: Chunk) -> IndexedPage:
    return IndexedPage(
        id=chunk.id,
        title=chunk.title,
        body=chunk.text,
        path=chunk.path,
        kind="chunk",
        headings=(chunk.heading,) if chunk.heading else (),
        extra={
            "doc_id": chunk.doc_id,
            "start_line": chunk.start_line,
            "end_line": chunk.end_line,
            "heading": chunk.heading,
        },
    )


def upsert_chunks(index: SearchIndex, chunks: Sequence[Chunk]) -> list[str]:
    """Index `chunks`; each document they come from ends up with exactly these chunks (stale ones dropped)."""
    by_doc: dict[str, list[Chunk]] = defaultdict(list)
    for chunk in chunks:
        by_doc[chunk.doc_id].append(chunk)
    changed: list[str] = []
    with index.transaction():
        for doc_id, doc_chunks in by_doc.items():
            pages = list({c.id: _as_page(c) for c in doc_chunks}.values())
            stale = set(index.chunks.ids_with_origin(_origin(doc_id))) - {p.id for p in pages}
            index.chunks.remove(sorted(stale))
            changed += index.chunks.upsert(pages, origin=_origin(doc_id))
    return changed


def remove_chunks(index: SearchIndex, doc_id: str) -> int:
    """Drop every chunk of a document; returns how many there were."""
    return index.chunks.remove(list(index.chunks.ids_with_origin(_origin(doc_id))))


def search_chunks(index: SearchIndex, query: str, n: int = 5, mode: str = "hybrid") -> list[ChunkHit]:
    return [
        ChunkHit(
            id=hit.id,
            doc_id=hit.extra["doc_id"],
            title=hit.title,
            text=_body(index, hit.id),
            start_line=hit.extra["start_line"],
            end_line=hit.extra["end_line"],
            heading=hit.extra.get("heading", ""),
            path=hit.path,
            score=hit.score,
            bm25_rank=hit.bm25_rank,
            vector_rank=hit.vector_rank,
        )
        for hit in index.chunks.search(query, n, mode)
    ]


def _body(index: SearchIndex, chunk_id: str) -> str:
    row = index.conn.execute("SELECT body FROM chunk_docs WHERE id = ?", (chunk_id,)).fetchone()
    return row[0] if row else ""
