"""`SearchIndex`: a SQLite file with an FTS5 (BM25) index and float32 embeddings of wiki pages and chunks.

Layout of the database (rebuildable from the files at any time; a corrupt or outdated file is rebuilt empty):
  meta(key, value)                         schema version, the embedder that made the stored vectors
  file_stamps(origin, id, stamp)           size and mtime of each synced file, so a sync skips unchanged ones
  {c}_docs(rowid, id, ..., hash, origin)   c = "page" or "chunk": one row per indexed page or chunk
  {c}_fts  fts5(title, aliases, tags, headings, body)   same rowid; CJK stored as bigrams (see text.py)
  {c}_vec(rowid, vec)                      same rowid; one L2-normalised float32 vector per row
Vector search is brute force over an in-memory matrix (10,000 x 384 is a ~1 ms dot product), reloaded when
this or another process has written since it was built.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from loracle.errors import LoracleError
from loracle.search.chunks import remove_chunks, search_chunks, upsert_chunks
from loracle.search.embedder import Embedder, default_embedder
from loracle.search.fusion import DEFAULT_FUSION, Fused, Ranked, fuse
from loracle.search.sync import sync_folder
from loracle.search.text import fts_query, index_form, snippet
from loracle.search.types import ChunkHit, IndexedPage, SearchHit, SyncReport
from loracle.sources.chunking import Chunk

SCHEMA_VERSION = 2
MODES = ("hybrid", "bm25", "vector")
# bm25() column weights, in column order: title, aliases, tags, headings, body.
COLUMN_WEIGHTS = (10.0, 8.0, 4.0, 3.0, 1.0)
EMBED_BATCH = 64


class _VectorCache:
    """All vectors of one collection as a matrix, rebuilt when the database has changed since."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, dtype=np.int64)
        self.matrix = np.zeros((0, 0), dtype=np.float32)
        self.version: tuple[int, int] | None = None

    def apply(self, patch: _CachePatch, version: tuple[int, int]) -> None:
        keys, matrix = self.keys, self.matrix
        if patch.removed:
            keep = ~np.isin(keys, np.asarray(patch.removed, dtype=np.int64))
            keys, matrix = keys[keep], matrix[keep]
        if patch.added:
            new_keys = np.asarray([rowid for rowid, _ in patch.added], dtype=np.int64)
            new_rows = np.stack([vector for _, vector in patch.added]).astype(np.float32)
            keys = np.concatenate([keys, new_keys])
            matrix = np.concatenate([matrix, new_rows]) if matrix.size else new_rows
        self.keys, self.matrix, self.version = keys, matrix, version


@dataclass
class _CachePatch:
    removed: list[int] = field(default_factory=list)
    added: list[tuple[int, np.ndarray]] = field(default_factory=list)


class Collection:
    """One family of searchable rows ("page" or "chunk") inside a `SearchIndex` database."""

    def __init__(self, index: SearchIndex, name: str) -> None:
        self.index = index
        self.name = name
        self._cache = _VectorCache()
        self._complete_at: tuple[int, int] | None = None  # data version at which every row had a vector

    # -- schema ---------------------------------------------------------------------------------------------
    def create(self, conn: sqlite3.Connection) -> None:
        c = self.name
        script = f"""
            CREATE TABLE IF NOT EXISTS {c}_docs (
                rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, title TEXT NOT NULL, path TEXT NOT NULL,
                kind TEXT NOT NULL, aliases TEXT NOT NULL, tags TEXT NOT NULL, headings TEXT NOT NULL,
                body TEXT NOT NULL, extra TEXT NOT NULL, hash TEXT NOT NULL, origin TEXT NOT NULL DEFAULT '');
            CREATE INDEX IF NOT EXISTS {c}_docs_origin ON {c}_docs(origin);
            CREATE VIRTUAL TABLE IF NOT EXISTS {c}_fts USING fts5(
                title, aliases, tags, headings, body, tokenize = 'porter unicode61 remove_diacritics 2');
            CREATE TABLE IF NOT EXISTS {c}_vec (rowid INTEGER PRIMARY KEY, vec BLOB NOT NULL);
            """
        for statement in filter(str.strip, script.split(";")):  # executescript would commit mid-transaction
            conn.execute(statement)

    # -- writes ---------------------------------------------------------------------------------------------
    def upsert(self, pages: Sequence[IndexedPage], origin: str | None = None) -> list[str]:
        """Index `pages`, skipping those whose content hash is unchanged; returns the ids (re)indexed.

        `origin` is the folder a sync read them from; None keeps a re-indexed page's origin (so a page that
        ingest updates directly is still dropped by the next sync once its file is deleted).
        """
        conn = self.index.conn
        known = self._hashes([p.id for p in pages])
        changed = [p for p in pages if known.get(p.id) != p.hash]
        if not changed:
            return []
        vectors = self.index.embed([p.embed_text() for p in changed]) if self.index.vectors else None
        with self._writing() as patch:
            for i, page in enumerate(changed):
                row = conn.execute(f"SELECT rowid, origin FROM {self.name}_docs WHERE id = ?", (page.id,)).fetchone()
                if row is not None:
                    self._delete_rows(row[0])
                    patch.removed.append(row[0])
                row_origin = origin if origin is not None else (row[1] if row is not None else "")
                cursor = conn.execute(
                    f"INSERT INTO {self.name}_docs (id, title, path, kind, aliases, tags, headings, body, extra, "
                    "hash, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        page.id,
                        page.title,
                        str(page.path),
                        page.kind,
                        json.dumps(list(page.aliases), ensure_ascii=False),
                        json.dumps(list(page.tags), ensure_ascii=False),
                        json.dumps(list(page.headings), ensure_ascii=False),
                        page.body,
                        json.dumps(page.extra, ensure_ascii=False, default=str),
                        page.hash,
                        row_origin,
                    ),
                )
                rowid = cursor.lastrowid
                conn.execute(
                    f"INSERT INTO {self.name}_fts (rowid, title, aliases, tags, headings, body) VALUES (?,?,?,?,?,?)",
                    (
                        rowid,
                        index_form(page.title),
                        index_form(" ; ".join(page.aliases)),
                        index_form(" ; ".join(page.tags)),
                        index_form(" ; ".join(page.headings)),
                        index_form(page.body),
                    ),
                )
                if vectors is not None:
                    conn.execute(
                        f"INSERT INTO {self.name}_vec (rowid, vec) VALUES (?, ?)", (rowid, vectors[i].tobytes())
                    )
                    patch.added.append((rowid, vectors[i]))
        return [p.id for p in changed]

    def remove(self, ids: Iterable[str]) -> int:
        """Drop rows by id; returns how many existed."""
        conn = self.index.conn
        with self._writing() as patch:
            for page_id in ids:
                row = conn.execute(f"SELECT rowid FROM {self.name}_docs WHERE id = ?", (page_id,)).fetchone()
                if row is not None:
                    self._delete_rows(row[0])
                    patch.removed.append(row[0])
        return len(patch.removed)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[_CachePatch]:
        """A write transaction whose vector changes are applied to the in-memory matrix after it commits,
        so the next search needn't reload every vector (if another process wrote too, it reloads)."""
        with self.index.lock:
            outermost = self.index.in_transaction() is False
            before = self.index.data_version()
            patch = _CachePatch()
            try:
                with self.index.transaction():
                    yield patch
            except BaseException:
                self._cache.version = None
                raise
            if not outermost or self._cache.version != before:
                self._cache.version = None
                return
            after = self.index.data_version()
            if after[0] != before[0]:
                self._cache.version = None
                return
            self._cache.apply(patch, after)

    def _delete_rows(self, rowid: int) -> None:
        conn = self.index.conn
        for table in ("docs", "fts", "vec"):
            conn.execute(f"DELETE FROM {self.name}_{table} WHERE rowid = ?", (rowid,))

    # -- reads ----------------------------------------------------------------------------------------------
    def _hashes(self, ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            marks = ",".join("?" * len(batch))
            rows = self.index.conn.execute(f"SELECT id, hash FROM {self.name}_docs WHERE id IN ({marks})", batch)
            found.update(dict(rows.fetchall()))
        return found

    def ids_with_origin(self, origin: str) -> dict[str, str]:
        """id -> hash of every row synced from `origin`."""
        rows = self.index.conn.execute(f"SELECT id, hash FROM {self.name}_docs WHERE origin = ?", (origin,))
        return dict(rows.fetchall())

    def count(self) -> int:
        return self.index.conn.execute(f"SELECT count(*) FROM {self.name}_docs").fetchone()[0]

    def search(self, query: str, n: int = 10, mode: str = "hybrid", fusion: str = DEFAULT_FUSION) -> list[SearchHit]:
        if mode not in MODES:
            raise LoracleError(f"search mode {mode!r}: choose one of {', '.join(MODES)}")
        if n <= 0 or not query.strip():
            return []
        if mode != "bm25" and not self.index.vectors:
            if mode == "vector":
                raise LoracleError("vector search is off for this index (it was opened without an embedder)")
            mode = "bm25"
        depth = max(3 * n, 30)
        with self.index.lock:
            bm25 = self._bm25(query, depth) if mode != "vector" else []
            vector = self._vector(query, depth) if mode != "bm25" else []
            if mode == "hybrid":
                fused = fuse(bm25, vector, fusion)[:n]
            else:  # one side only: its own score (BM25, or cosine similarity) is the more telling number
                fused = [Fused(r.key, r.score, r.rank, None) for r in bm25[:n]]
                fused += [Fused(r.key, r.score, None, r.rank) for r in vector[:n]]
            return self._hits(fused, query)

    def _bm25(self, query: str, limit: int) -> list[Ranked]:
        expression = fts_query(query)
        if not expression:
            return []
        weights = ", ".join(str(w) for w in COLUMN_WEIGHTS)
        rows = self.index.conn.execute(
            f"SELECT rowid, bm25({self.name}_fts, {weights}) AS s FROM {self.name}_fts "
            f"WHERE {self.name}_fts MATCH ? ORDER BY s LIMIT ?",
            (expression, limit),
        ).fetchall()
        return [Ranked(rowid, -score, rank) for rank, (rowid, score) in enumerate(rows, start=1)]

    def _vector(self, query: str, limit: int) -> list[Ranked]:
        query_vector = self.index.embed_query(query)  # first: resolving the embedder drops foreign vectors
        self._backfill_vectors()
        cache = self._vectors()
        if cache.keys.size == 0:
            return []
        scores = cache.matrix @ query_vector
        top = np.argpartition(-scores, limit - 1)[:limit] if scores.size > limit else np.arange(scores.size)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Ranked(int(cache.keys[i]), float(scores[i]), rank) for rank, i in enumerate(top, start=1)]

    def _vectors(self) -> _VectorCache:
        version = self.index.data_version()
        if self._cache.version != version:
            rows = self.index.conn.execute(f"SELECT rowid, vec FROM {self.name}_vec ORDER BY rowid").fetchall()
            dim = self.index.embedder.dim if rows else 0
            self._cache.keys = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
            self._cache.matrix = matrix.reshape(len(rows), dim) if rows else np.zeros((0, 0), np.float32)
            self._cache.version = version
        return self._cache

    def _backfill_vectors(self) -> None:
        """Embed rows indexed while vectors were off (or by another embedder), so vector search sees every row.
        The scan for such rows is skipped while the database is unchanged since the last one found none."""
        if self.index.data_version() == self._complete_at:
            return
        conn = self.index.conn
        missing = conn.execute(
            f"SELECT d.rowid, d.title, d.aliases, d.body FROM {self.name}_docs d "
            f"LEFT JOIN {self.name}_vec v ON v.rowid = d.rowid WHERE v.rowid IS NULL"
        ).fetchall()
        for start in range(0, len(missing), 512):
            batch = missing[start : start + 512]
            texts = [IndexedPage("", t, b, aliases=tuple(json.loads(a))).embed_text() for _, t, a, b in batch]
            vectors = self.index.embed(texts)
            with self.index.transaction():
                conn.executemany(
                    f"INSERT OR REPLACE INTO {self.name}_vec (rowid, vec) VALUES (?, ?)",
                    [(row[0], vec.tobytes()) for row, vec in zip(batch, vectors, strict=True)],
                )
            self._cache.version = None
        self._complete_at = self.index.data_version()

    def _hits(self, fused: list[Fused], query: str) -> list[SearchHit]:
        hits = []
        for f in fused:
            row = self.index.conn.execute(
                f"SELECT id, title, path, kind, body, extra FROM {self.name}_docs WHERE rowid = ?", (f.key,)
            ).fetchone()
            if row is None:
                continue
            page_id, title, path, kind, body, extra = row
            hits.append(
                SearchHit(
                    id=page_id,
                    title=title,
                    path=path,
                    score=float(f.score),
                    snippet=snippet(body, query),
                    bm25_rank=f.bm25_rank,
                    vector_rank=f.vector_rank,
                    kind=kind,
                    extra=json.loads(extra),
                )
            )
        return hits


class SearchIndex:
    """Hybrid (BM25 + vector) search over wiki pages, and over document chunks for retrieval.

    `embedder=None` uses the bundled all-MiniLM-L6-v2 (loaded on first need); `vectors=False` keeps the
    index BM25-only (no model load at all; "hybrid" then means BM25). Safe to share between threads.
    """

    def __init__(
        self, db_path: Path, embedder: Embedder | None = None, *, vectors: bool = True, query_cache: int = 512
    ) -> None:
        self.db_path = Path(db_path)
        self.vectors = vectors
        self._embedder = embedder
        self.lock = threading.RLock()
        self.rebuilt = False  # True when an unreadable or outdated database was replaced by an empty one
        self.pages = Collection(self, "page")
        self.chunks = Collection(self, "chunk")
        self._query_vectors: dict[str, np.ndarray] = {}
        self._query_cache = query_cache
        self._depth = 0
        self._embedder_checked = False
        self.conn = self._open()

    # -- opening, checking, rebuilding ----------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._connect_checked()
        except sqlite3.DatabaseError:
            self._discard_files()
            self.rebuilt = True
            return self._connect_checked()

    def _connect_checked(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False, timeout=10.0)
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            status = conn.execute("PRAGMA quick_check").fetchone()[0]
            if status != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {status}")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if version is not None and version[0] != str(SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"schema version {version[0]}, expected {SCHEMA_VERSION}")
            conn.execute("BEGIN IMMEDIATE")
            for collection in (self.pages, self.chunks):
                collection.create(conn)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS file_stamps (origin TEXT NOT NULL, id TEXT NOT NULL, stamp TEXT NOT NULL, "
                "PRIMARY KEY (origin, id))"
            )
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("COMMIT")
            return conn
        except BaseException:
            conn.close()
            raise

    def _discard_files(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self.db_path}{suffix}").unlink()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction: all of it lands, or none of it. Nested calls join the outer transaction."""
        with self.lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")
            finally:
                self._depth = 0

    def in_transaction(self) -> bool:
        return self._depth > 0

    def data_version(self) -> tuple[int, int]:
        """Changes when any connection (this one: total_changes; others: data_version) commits a write."""
        other = self.conn.execute("PRAGMA data_version").fetchone()[0]
        return (other, self.conn.total_changes)

    # -- embeddings -----------------------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = default_embedder()
        if not self._embedder_checked:
            self._drop_vectors_of_other_embedders(self._embedder)
            self._embedder_checked = True
        return self._embedder

    def _drop_vectors_of_other_embedders(self, embedder: Embedder) -> None:
        """Vectors made by another model (or dimension) are meaningless here: drop them; they get recomputed."""
        signature = f"{embedder.name}:{embedder.dim}"
        with self.transaction():
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
            if row is not None and row[0] == signature:
                return
            for collection in (self.pages, self.chunks):
                self.conn.execute(f"DELETE FROM {collection.name}_vec")
                collection._cache.version = None
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('embedder', ?)", (signature,))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = [self.embedder.encode(texts[i : i + EMBED_BATCH]) for i in range(0, len(texts), EMBED_BATCH)]
        return np.concatenate(vectors) if vectors else np.zeros((0, self.embedder.dim), np.float32)

    def embed_query(self, query: str) -> np.ndarray:
        """The query's vector, remembered for the last `query_cache` queries."""
        vector = self._query_vectors.get(query)
        if vector is None:
            vector = self.embedder.encode([query])[0]
            if self._query_cache > 0:
                if len(self._query_vectors) >= self._query_cache:
                    self._query_vectors.pop(next(iter(self._query_vectors)))
                self._query_vectors[query] = vector
        return vector

    # -- file stamps: let a folder sync skip reading files that have not changed ----------------------------
    def file_stamps(self, origin: str) -> dict[str, str]:
        rows = self.conn.execute("SELECT id, stamp FROM file_stamps WHERE origin = ?", (origin,))
        return dict(rows.fetchall())

    def set_file_stamps(self, origin: str, stamps: dict[str, str], forget: Sequence[str] = ()) -> None:
        with self.transaction():
            self.conn.executemany(
                "INSERT OR REPLACE INTO file_stamps (origin, id, stamp) VALUES (?, ?, ?)",
                [(origin, page_id, stamp) for page_id, stamp in stamps.items()],
            )
            self.conn.executemany(
                "DELETE FROM file_stamps WHERE origin = ? AND id = ?", [(origin, page_id) for page_id in forget]
            )

    # -- pages ----------------------------------------------------------------------------------------------
    def upsert(self, page: IndexedPage) -> bool:
        """Index one page; False when it was already indexed with the same content."""
        return bool(self.pages.upsert([page]))

    def upsert_many(self, pages: Sequence[IndexedPage]) -> list[str]:
        """Index pages in one transaction (embeddings batched); returns the ids that changed."""
        return self.pages.upsert(pages)

    def remove(self, page_id: str) -> bool:
        return bool(self.pages.remove([page_id]))

    def search(self, query: str, n: int = 10, mode: str = "hybrid", fusion: str = DEFAULT_FUSION) -> list[SearchHit]:
        """Pages best matching `query`. mode: "hybrid" (BM25 + vectors fused), "bm25" or "vector"."""
        return self.pages.search(query, n, mode, fusion)

    def sync_folder(self, folder: Path) -> SyncReport:
        """Index every .md page under `folder`; see `loracle.search.sync.sync_folder`."""
        return sync_folder(self, folder)

    # -- chunks (retrieval for the context learner) ---------------------------------------------------------
    def upsert_chunks(self, chunks: Sequence[Chunk]) -> list[str]:
        """Index chunks; every document in `chunks` gets exactly these chunks (its older ones are dropped)."""
        return upsert_chunks(self, chunks)

    def remove_chunks(self, doc_id: str) -> int:
        return remove_chunks(self, doc_id)

    def search_chunks(self, query: str, n: int = 5, mode: str = "hybrid") -> list[ChunkHit]:
        """Passages best matching `query`, with their document id and line span (for citations)."""
        return search_chunks(self, query, n, mode)

    # -- lifetime -------------------------------------------------------------------------------------------
    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
