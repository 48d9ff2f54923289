"""Search a knowledge base's wiki: bring its index up to date with wiki/, then query it."""

from __future__ import annotations

from dataclasses import dataclass

from loracle.errors import LoracleError
from loracle.kb import KBPaths
from loracle.search.index import MODES, SearchIndex
from loracle.search.types import SearchHit, SyncReport


@dataclass(frozen=True)
class KBSearchResult:
    query: str
    mode: str
    hits: list[SearchHit]
    sync: SyncReport


def search_kb(kb: KBPaths, query: str, n: int = 10, mode: str = "hybrid") -> KBSearchResult:
    """Sync <kb>/.loracle/search.db with <kb>/wiki/ (changed pages only), then search it.

    BM25 mode never loads the embedding model; pages it indexes get their vectors on the next vector search.
    """
    if mode not in MODES:
        raise LoracleError(f"--mode {mode}: choose one of {', '.join(MODES)}")
    if not query.strip():
        raise LoracleError("empty search: give some terms")
    if not kb.wiki.is_dir():
        raise LoracleError(f"{kb.wiki}: no wiki folder in this knowledge base (run `loracle init {kb.root}`)")
    with SearchIndex(kb.search_db, vectors=mode != "bm25") as index:
        report = index.sync_folder(kb.wiki)
        hits = index.search(query, n=n, mode=mode)
    return KBSearchResult(query, mode, hits, report)
