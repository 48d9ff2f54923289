"""Hybrid search: SQLite FTS5 (BM25) + all-MiniLM-L6-v2 vectors, fused; over wiki pages and document chunks."""

from loracle.search.embedder import Embedder, MiniLMEmbedder, default_embedder
from loracle.search.index import MODES, SearchIndex
from loracle.search.sync import page_from_markdown, sync_folder
from loracle.search.types import ChunkHit, IndexedPage, SearchHit, SyncReport

__all__ = [
    "MODES",
    "ChunkHit",
    "Embedder",
    "IndexedPage",
    "MiniLMEmbedder",
    "SearchHit",
    "SearchIndex",
    "SyncReport",
    "default_embedder",
    "page_from_markdown",
    "sync_folder",
]
