"""The documents a knowledge base's adapters were compiled from: where each is now, and whether it changed since.

An adapter's manifest names its source ("raw" or "wiki") and its document id; the document is found through
the compile pipeline's own sources (the same ids), and its hash is remembered per file version, so looking
costs one directory walk per source plus reading the files that changed. An adapter is stale when its document
now has another content hash, or is gone. Adapters compiled from several pages (--aggregate) or merged have
no one document to compare with: their staleness is unknown (None) rather than guessed.
"""

from __future__ import annotations

import threading
from pathlib import Path

from loracle.adapters.manifest import AdapterManifest
from loracle.documents import Document
from loracle.errors import LoracleError
from loracle.kb import KBPaths
from loracle.pipeline import FolderSource, raw_source, wiki_source


class AdapterSources:
    """Finds, reads and hashes the documents of a knowledge base's adapters (thread-safe)."""

    def __init__(self, kb: KBPaths) -> None:
        self.kb = kb
        self.sources: dict[str, FolderSource] = {"raw": raw_source(kb.root), "wiki": wiki_source(kb.root)}
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()

    def locate(self, manifests: list[AdapterManifest]) -> dict[str, Path | None]:
        """adapter id -> the file its document is in now (None: gone, or no single source document)."""
        paths: dict[str, dict[str, Path]] = {}
        found: dict[str, Path | None] = {}
        for manifest in manifests:
            source = self.sources.get(manifest.source)
            if source is None:
                found[manifest.id] = None
                continue
            if source.name not in paths:  # one walk per source, whatever the number of adapters
                paths[source.name] = {i: p for p in source.paths() if (i := source.doc_id(p))}
            found[manifest.id] = paths[source.name].get(manifest.document_id)
        return found

    def stale(self, manifest: AdapterManifest, path: Path | None) -> bool | None:
        """Whether the adapter's document changed (or went) since it was compiled; None when that can't be told."""
        if manifest.source not in self.sources or not manifest.content_hash or not single_document(manifest):
            return None
        if path is None:
            return True  # its document is gone
        current = self.current_hash(manifest.source, path)
        return None if current is None else current != manifest.content_hash

    def current_hash(self, source_name: str, path: Path) -> str | None:
        """The content hash compile would record for the file now (None: unreadable)."""
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key in self._hashes:
                return self._hashes[key]
        document = self.read(source_name, path)
        if document is None:
            return None
        with self._lock:
            self._hashes[key] = document.hash
        return document.hash

    def read(self, source_name: str, path: Path) -> Document | None:
        """The document in `path` as the source reads it (None: unreadable)."""
        try:
            return self.sources[source_name].read(path)
        except (LoracleError, OSError):
            return None

    def relative(self, manifest: AdapterManifest, path: Path | None) -> tuple[str | None, str | None]:
        """(the wiki page, under wiki/, when the document is one; the file, under the knowledge base)."""
        if path is None:
            return None, None
        page = path.relative_to(self.kb.wiki).as_posix() if manifest.source == "wiki" else None
        return page, path.relative_to(self.kb.root).as_posix()


def single_document(manifest: AdapterManifest) -> bool:
    """Whether the adapter was compiled from its document alone (not --aggregate, not a merge)."""
    return manifest.inputs in ([], [manifest.document_id])
