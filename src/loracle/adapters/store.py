"""Adapter stores: where compiled adapters live. `AdapterStore` is the interface; `LocalAdapterStore` keeps
them as <kb>/adapters/<id>/ folders (PEFT format + manifest.json).

Publishing is atomic: an adapter is built in a hidden staging folder (name starting with '.') and renamed
into place, so a reader (or a kill -9) never sees half an adapter. Hidden folders are not adapters; leftovers
of a crash are removed by `cleanup()`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

from safetensors import safe_open

from loracle.adapters.manifest import AdapterManifest
from loracle.atomic import replace_folder, restore_folder
from loracle.documents import slugify
from loracle.errors import AdapterError
from loracle.model.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, MANIFEST

REQUIRED_FILES = (ADAPTER_WEIGHTS, ADAPTER_CONFIG, MANIFEST)


@runtime_checkable
class AdapterStore(Protocol):
    """A place adapters are kept. A new backend (S3, a database) implements these seven methods."""

    def list(self) -> list[AdapterManifest]: ...

    def get(self, adapter_id: str) -> AdapterManifest: ...

    def staging_folder(self, adapter_id: str) -> Path:
        """A fresh, empty local folder to build an adapter in before `put` (invisible to `list`)."""
        ...

    def put(self, adapter_id: str, folder: Path) -> AdapterManifest:
        """Publish a built adapter folder (weights, config, manifest) under `adapter_id`, atomically."""
        ...

    def remove(self, adapter_id: str) -> None: ...

    def path(self, adapter_id: str) -> Path:
        """A local folder PEFT can load the adapter from."""
        ...

    def cleanup(self) -> None:
        """Remove leftovers of interrupted writes."""
        ...


def check_adapter_id(adapter_id: str) -> str:
    """Refuse ids that aren't already safe folder names (use `slugify` to make one from a document name)."""
    if not adapter_id or adapter_id != slugify(adapter_id):
        raise AdapterError(f"{adapter_id!r}: not a valid adapter id (lowercase letters, digits, '-' and '_')")
    return adapter_id


def check_adapter_folder(folder: Path) -> AdapterManifest:
    """The folder's manifest, if the folder holds a complete adapter; a one-line error otherwise."""
    for name in REQUIRED_FILES:
        if not (folder / name).is_file():
            raise AdapterError(f"{folder}: incomplete adapter (no {name})")
    return AdapterManifest.read(folder)


def weights_problem(folder: Path) -> str:
    """Why the folder's weights file cannot be read as safetensors (its header is parsed), or ""."""
    path = folder / ADAPTER_WEIGHTS
    try:
        with safe_open(str(path), framework="pt") as weights:
            weights.keys()
    except Exception as exc:  # safetensors raises its own error types on corrupt files
        return f"{path}: unreadable weights ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})"
    return ""


def _folder_bytes(folder: Path) -> int:
    return sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file(follow_symlinks=False))


class LocalAdapterStore:
    """Adapters as folders under `root` (normally <kb>/adapters)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalAdapterStore({self.root})"

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in os.scandir(self.root)
            if entry.is_dir() and not entry.name.startswith(".") and (Path(entry.path) / ADAPTER_CONFIG).is_file()
        )

    def list(self) -> list[AdapterManifest]:
        return [manifest for manifest, _problem in self.inspect()]

    def inspect(self) -> list[tuple[AdapterManifest, str]]:
        """Every adapter with what is wrong with it ("" when nothing is). Nothing a manifest claims is trusted:
        the id is the folder's name (a copied folder is its own adapter) and the size is measured."""
        found = []
        for adapter_id in self.ids():
            folder = self.root / adapter_id
            problem = weights_problem(folder)
            try:
                manifest = AdapterManifest.read(folder)
            except AdapterError as exc:
                manifest, problem = AdapterManifest(id=adapter_id, source="unknown"), problem or str(exc)
            found.append((manifest.updated(id=adapter_id, size_bytes=_folder_bytes(folder)), problem))
        return found

    def get(self, adapter_id: str) -> AdapterManifest:
        return check_adapter_folder(self.path(adapter_id))

    def exists(self, adapter_id: str) -> bool:
        return (self.root / check_adapter_id(adapter_id) / ADAPTER_CONFIG).is_file()

    def path(self, adapter_id: str) -> Path:
        folder = self.root / check_adapter_id(adapter_id)
        if not folder.is_dir():
            raise AdapterError(f"{adapter_id}: no such adapter in {self.root}")
        return folder

    def staging_folder(self, adapter_id: str) -> Path:
        """A fresh hidden folder inside the store (same file system, so publishing is a rename)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=self.root, prefix=f".{check_adapter_id(adapter_id)}.staging-"))

    def put(self, adapter_id: str, folder: Path) -> AdapterManifest:
        check_adapter_id(adapter_id)
        manifest = check_adapter_folder(folder)
        if manifest.id != adapter_id:
            manifest = manifest.updated(id=adapter_id)
            manifest.write(folder)
        folder = Path(folder)
        if folder.parent.resolve() != self.root.resolve():
            staging = self.staging_folder(adapter_id)
            shutil.rmtree(staging)
            shutil.copytree(folder, staging)
            folder = staging
        self._swap_in(adapter_id, folder)
        return manifest

    def _swap_in(self, adapter_id: str, staging: Path) -> None:
        replace_folder(staging, self.root / adapter_id)

    def remove(self, adapter_id: str) -> None:
        """Hide the folder with one rename, then delete it (a crash leaves only a hidden leftover)."""
        target = self.path(adapter_id)
        trash = self.root / f".{adapter_id}.removed-{os.getpid()}"
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(target, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def cleanup(self) -> None:
        """Delete hidden leftovers of interrupted writes (an adapter a crash left renamed aside is put back
        first). Call it only while holding the compile lock."""
        if not self.root.is_dir():
            return
        for entry in os.scandir(self.root):
            if entry.name.startswith(".") and ".old-" in entry.name:
                restore_folder(self.root / entry.name[1:].rsplit(".old-", 1)[0])
        for entry in os.scandir(self.root):
            if entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    shutil.rmtree(entry.path)
