"""Which adapters the server can serve: the knowledge base's adapter store, looked up by id.

Ids come from HTTP requests, so they are validated (the store's own rule) before they touch a path.
The store is listed again on every listing and on every lookup (one directory read): adapters that
`watch` compiles appear without a restart.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from loracle.adapters.store import LocalAdapterStore, check_adapter_id
from loracle.errors import AdapterError
from loracle.model.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS


class UnknownAdapterError(AdapterError):
    """No adapter with this id in the knowledge base."""


class InvalidAdapterIdError(AdapterError):
    """The id could never name an adapter folder (path separators, `..`, odd characters)."""


def validate_adapter_id(adapter_id: str) -> str:
    try:
        return check_adapter_id(adapter_id)
    except AdapterError as exc:
        raise InvalidAdapterIdError(str(exc)) from exc


class AdapterCatalog:
    """The adapters of <kb>/adapters (a LocalAdapterStore), or none without a knowledge base."""

    def __init__(self, root: Path | None) -> None:
        self.store = LocalAdapterStore(root) if root is not None else None

    def ids(self) -> list[str]:
        return self.store.ids() if self.store else []

    def folder_for(self, adapter_id: str) -> Path:
        validate_adapter_id(adapter_id)
        if self.store is not None:
            folder = self.store.root / adapter_id
            if (folder / ADAPTER_CONFIG).is_file() and (folder / ADAPTER_WEIGHTS).is_file():
                return folder
        raise UnknownAdapterError(f"{adapter_id}: no such adapter")

    def describe(self, adapter_id: str) -> dict[str, Any]:
        """Size, age and what the manifest says (source document, its hash, the base model)."""
        folder = self.folder_for(adapter_id)
        stat = (folder / ADAPTER_WEIGHTS).stat()
        try:
            manifest = self.store.get(adapter_id).model_dump() if self.store else {}
        except AdapterError as exc:
            manifest = {"error": str(exc)}
        return {
            "id": adapter_id,
            "size_bytes": stat.st_size,
            "modified": stat.st_mtime,
            "age_s": max(0.0, time.time() - stat.st_mtime),
            "manifest": manifest,
        }
