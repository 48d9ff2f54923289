"""Which adapters the server can serve: the knowledge base's adapter store, looked up by id.

Ids come from HTTP requests, so they are validated (the store's own rule) before they touch a path.
A folder of the store is usable when its name is a valid id, it holds the PEFT config and weights, and
neither it nor they link outside the store; any other folder is listed as unusable with the reason, and
never taken for an adapter (so /v1/models, /api/adapters and requests agree). The store is listed again
on every listing and on every lookup (one directory read): adapters that `watch` compiles appear without
a restart.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loracle.adapters.store import LocalAdapterStore, check_adapter_id
from loracle.errors import AdapterError
from loracle.model.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS


class UnknownAdapterError(AdapterError):
    """No adapter with this id in the knowledge base."""


class InvalidAdapterIdError(AdapterError):
    """The id could never name an adapter folder (path separators, `..`, odd characters)."""


@dataclass(frozen=True)
class Unusable:
    """A folder of the adapter store that is not served, and why."""

    folder: str
    problem: str


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
        """The usable adapters' ids, sorted."""
        return self.listing()[0]

    def listing(self) -> tuple[list[str], list[Unusable]]:
        """(usable ids, the store's other folders with their problem); hidden folders are neither."""
        if self.store is None or not self.store.root.is_dir():
            return [], []
        usable, unusable = [], []
        for entry in sorted(os.scandir(self.store.root), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            problem = self._problem(entry.name)
            if problem is None:
                usable.append(entry.name)
            else:
                shown = entry.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                unusable.append(Unusable(shown, problem))
        return usable, unusable

    def folder_for(self, adapter_id: str) -> Path:
        validate_adapter_id(adapter_id)
        if self.store is None or self._problem(adapter_id) is not None:
            raise UnknownAdapterError(f"{adapter_id}: no such adapter")
        return self.store.root / adapter_id

    def _problem(self, name: str) -> str | None:
        """Why the store's folder `name` is not a usable adapter, or None when it is."""
        assert self.store is not None
        try:
            check_adapter_id(name)
        except AdapterError:
            return "not a valid adapter id (lowercase letters, digits, '-' and '_')"
        root = self.store.root.resolve()
        folder = self.store.root / name
        for path in (folder, folder / ADAPTER_CONFIG, folder / ADAPTER_WEIGHTS):
            if not path.exists():
                return f"incomplete adapter (no {path.name})" if path != folder else "no such folder"
            if not path.resolve().is_relative_to(root):
                return "links outside the knowledge base's adapters folder"
        if not (folder / ADAPTER_CONFIG).is_file() or not (folder / ADAPTER_WEIGHTS).is_file():
            return f"incomplete adapter ({ADAPTER_CONFIG} and {ADAPTER_WEIGHTS} must be files)"
        return None

    def describe(self, adapter_id: str) -> dict[str, Any]:
        """Size, age and what the manifest says (source document, its hash, the base model)."""
        folder = self.folder_for(adapter_id)
        stat = (folder / ADAPTER_WEIGHTS).stat()
        try:
            manifest = self.store.get(adapter_id).model_dump() if self.store else {}
        except AdapterError as exc:  # named by the adapter, not by the server's path to it
            manifest = {"error": str(exc).replace(str(folder), f"adapters/{adapter_id}")}
        return {
            "id": adapter_id,
            "size_bytes": stat.st_size,
            "modified": stat.st_mtime,
            "age_s": max(0.0, time.time() - stat.st_mtime),
            "manifest": manifest,
        }
