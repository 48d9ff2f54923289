"""The adapter inventory for the web page: size, age, source page, and whether the source changed since.

Staleness and the source page come from loracle.adapter_sources (the compile pipeline's own sources, hashes
remembered per file version), so listing costs one directory walk plus reading changed files.
"""

from __future__ import annotations

from typing import Any

from loracle.adapter_sources import AdapterSources
from loracle.adapters.manifest import AdapterManifest
from loracle.kb import KBPaths
from loracle.serve.catalog import AdapterCatalog, UnknownAdapterError, Unusable


class AdapterInventory:
    def __init__(self, kb: KBPaths, catalog: AdapterCatalog, sources: AdapterSources | None = None) -> None:
        self.kb, self.catalog = kb, catalog
        self.sources = sources or AdapterSources(kb)

    def listing(self, loaded: set[str]) -> tuple[list[dict[str, Any]], list[Unusable]]:
        """(a row per usable adapter, the adapter folders that are not usable)."""
        usable, unusable = self.catalog.listing()
        rows, manifests = [], {}
        for adapter_id in usable:
            try:
                row = self.catalog.describe(adapter_id)
            except (UnknownAdapterError, OSError):
                continue  # removed while we listed
            rows.append(row)
            if "error" not in row["manifest"]:
                manifests[adapter_id] = AdapterManifest.model_validate(row["manifest"])
        paths = self.sources.locate(list(manifests.values()))
        for row in rows:
            manifest, path = manifests.get(row["id"]), paths.get(row["id"])
            row["loaded"] = row["id"] in loaded
            row["stale"] = self.sources.stale(manifest, path) if manifest else None
            row["page"], row["source_path"] = self.sources.relative(manifest, path) if manifest else (None, None)
        return rows, unusable
