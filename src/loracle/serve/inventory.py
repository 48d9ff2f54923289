"""The adapter inventory for the web page: size, age, source page, and whether the source changed since.

An adapter is stale when the document it was compiled from now has another content hash (or is gone).
The document is found through the compile pipeline's own sources (raw/ and wiki/, the same ids), and its
hash is remembered per file version, so listing costs one directory walk plus reading changed files.
Adapters compiled from several pages (--aggregate) or merged are "unknown" rather than guessed.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from loracle.errors import LoracleError
from loracle.kb import KBPaths
from loracle.pipeline import FolderSource, raw_source, wiki_source
from loracle.serve.catalog import AdapterCatalog, UnknownAdapterError, Unusable


class AdapterInventory:
    def __init__(self, kb: KBPaths, catalog: AdapterCatalog) -> None:
        self.kb, self.catalog = kb, catalog
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()

    def listing(self, loaded: set[str]) -> tuple[list[dict[str, Any]], list[Unusable]]:
        """(a row per usable adapter, the adapter folders that are not usable)."""
        usable, unusable = self.catalog.listing()
        sources = {"raw": raw_source(self.kb.root), "wiki": wiki_source(self.kb.root)}
        paths: dict[str, dict[str, Path]] = {}
        rows = []
        for adapter_id in usable:
            try:
                row = self.catalog.describe(adapter_id)
            except (UnknownAdapterError, OSError):
                continue  # removed while we listed
            manifest = row["manifest"]
            source = sources.get(str(manifest.get("source", "")))
            path = None
            if source is not None:
                if source.name not in paths:
                    paths[source.name] = {i: p for p in source.paths() if (i := source.doc_id(p))}
                path = paths[source.name].get(str(manifest.get("document_id", "")))
            row["loaded"] = adapter_id in loaded
            row["stale"] = self._stale(manifest, source, path)
            row["page"] = path.relative_to(self.kb.wiki).as_posix() if path and source is sources["wiki"] else None
            row["source_path"] = path.relative_to(self.kb.root).as_posix() if path else None
            rows.append(row)
        return rows, unusable

    def _stale(self, manifest: dict[str, Any], source: FolderSource | None, path: Path | None) -> bool | None:
        document_id, recorded = str(manifest.get("document_id", "")), manifest.get("content_hash")
        if source is None or not recorded or manifest.get("inputs", [document_id]) not in ([], [document_id]):
            return None
        if path is None:
            return True  # its document is gone
        current = self._hash(source, path)
        return None if current is None else current != recorded

    def _hash(self, source: FolderSource, path: Path) -> str | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key in self._hashes:
                return self._hashes[key]
        try:
            digest = source.read(path).hash
        except LoracleError:
            return None
        with self._lock:
            self._hashes[key] = digest
        return digest
