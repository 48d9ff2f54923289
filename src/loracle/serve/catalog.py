"""Which adapters the server can serve: the knowledge base's adapter folders, looked up by id.

Ids come from HTTP requests, so they are validated before they touch a path. The folder is listed
again on every lookup of an unknown id and on every listing (one directory read): adapters that
`watch` compiles appear without a restart.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from loracle.errors import AdapterError
from loracle.model.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, MANIFEST

ADAPTER_ID_RE = re.compile(r"^\w[\w.-]{0,127}$", re.UNICODE)


class UnknownAdapterError(AdapterError):
    """No adapter with this id in the knowledge base."""


class InvalidAdapterIdError(AdapterError):
    """The id could never name an adapter folder (path separators, `..`, odd characters)."""


def validate_adapter_id(adapter_id: str) -> str:
    if not ADAPTER_ID_RE.fullmatch(adapter_id) or ".." in adapter_id:
        raise InvalidAdapterIdError(f"{adapter_id[:80]!r}: not a valid adapter id (letters, digits, '.', '-', '_')")
    return adapter_id


class AdapterCatalog:
    """Adapters under <kb>/adapters/<id>/ (PEFT folders; staging folders start with '.' and are skipped)."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def ids(self) -> list[str]:
        if self.root is None or not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if not p.name.startswith(".") and ADAPTER_ID_RE.fullmatch(p.name) and _is_adapter(p)
        )

    def folder_for(self, adapter_id: str) -> Path:
        validate_adapter_id(adapter_id)
        if self.root is not None:
            folder = self.root / adapter_id
            if _is_adapter(folder):
                return folder
        raise UnknownAdapterError(f"{adapter_id}: no such adapter")

    def describe(self, adapter_id: str) -> dict[str, Any]:
        """Size, age and what the manifest says (source page, its hash, the base model)."""
        folder = self.folder_for(adapter_id)
        manifest = read_manifest(folder)
        weights = folder / ADAPTER_WEIGHTS
        stat = weights.stat()
        return {
            "id": adapter_id,
            "size_bytes": stat.st_size,
            "modified": stat.st_mtime,
            "age_s": max(0.0, time.time() - stat.st_mtime),
            "manifest": manifest,
        }


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (ValueError, UnicodeDecodeError, OSError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_adapter(folder: Path) -> bool:
    return (folder / ADAPTER_CONFIG).is_file() and (folder / ADAPTER_WEIGHTS).is_file()
