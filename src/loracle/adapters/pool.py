"""Adapters loaded into one PEFT-wrapped base model and switched per request (server, CLI, chat, Python API).

The base model is wrapped in PEFT once (on the first adapter); each adapter is loaded once and kept
(least recently used first out, never one a running request holds). Switching sets the active
adapters and their weights on the cached LoRA layers: no weights move, so it costs well under a
millisecond per layer. PEFT injects its layers into the base model in place, so *every* forward pass
of `lm.model` runs with whatever is active: callers must hold `lock` and `activate(...)` first.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loracle.errors import AdapterError
from loracle.model.adapters import ADAPTER_WEIGHTS, check_adapter_fits
from loracle.model.loader import LoadedModel

if TYPE_CHECKING:
    from peft import PeftModel

#: (adapter id, weight) pairs, in the order they stack
AdapterSpec = tuple[tuple[str, float], ...]


@dataclass
class _Loaded:
    name: str  # PEFT's adapter name (ids may hold dots, which PEFT's module dicts refuse)
    folder: Path
    signature: tuple[int, int]
    base_scaling: list[tuple[Any, float]] = field(default_factory=list)  # (layer, scaling at weight 1)


def folder_signature(folder: Path) -> tuple[int, int]:
    """(mtime_ns, size) of the weights: changes when `watch` recompiles the adapter in place."""
    stat = (folder / ADAPTER_WEIGHTS).stat()
    return stat.st_mtime_ns, stat.st_size


class AdapterPool:
    def __init__(self, lm: LoadedModel, resolve: Callable[[str], Path], max_loaded: int = 16) -> None:
        self.lm = lm
        self.lock = threading.RLock()
        self._resolve = resolve
        self._max_loaded = max(1, max_loaded)
        self._peft: PeftModel | None = None
        self._layers: list[Any] = []
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()
        self._pins: Counter[str] = Counter()
        self._names = itertools.count()
        self._active: AdapterSpec | None = ()

    def loaded(self) -> list[str]:
        with self.lock:
            return list(self._loaded)

    def ensure_loaded(self, adapter_id: str) -> None:
        """Load the adapter unless it is loaded and unchanged on disk; reload it if it changed."""
        folder = self._resolve(adapter_id)
        signature = folder_signature(folder)
        with self.lock:
            current = self._loaded.get(adapter_id)
            if current is not None and current.signature == signature and current.folder == folder:
                self._loaded.move_to_end(adapter_id)
                return
            if current is not None:
                if self._pins[adapter_id]:
                    return  # a running request uses it; the next request after it picks up the new version
                self._delete(adapter_id)
            self._make_room()
            self._load(adapter_id, folder, signature)

    def unload(self, adapter_id: str) -> bool:
        """Drop a loaded adapter; False if it was not loaded. Refused while a request uses it."""
        with self.lock:
            if adapter_id not in self._loaded:
                return False
            if self._pins[adapter_id]:
                raise AdapterError(f"{adapter_id}: in use by a running request; try again when it ends")
            self._delete(adapter_id)
            return True

    @contextmanager
    def pinned(self, spec: AdapterSpec) -> Iterator[None]:
        """Keep the spec's adapters loaded (not evicted) while a request runs."""
        ids = [adapter_id for adapter_id, _ in spec]
        with self.lock:
            for adapter_id in ids:
                self.ensure_loaded(adapter_id)
                self._pins[adapter_id] += 1
        try:
            yield
        finally:
            with self.lock:
                self._pins.subtract(ids)
                self._pins += Counter()  # drop zero counts

    def close(self) -> None:
        """Take PEFT's layers out of the base model again, leaving `lm` as it was given."""
        with self.lock:
            if self._peft is not None:
                self._peft.unload()
                self._peft, self._layers = None, []
                self._loaded.clear()
                self._active = ()

    def activate(self, spec: AdapterSpec) -> None:
        """Make exactly these adapters, at these weights, active (no-op when already so). Hold `lock`."""
        if spec == self._active:
            return
        if self._peft is None:
            if spec:
                raise AdapterError(f"{spec[0][0]}: not loaded")
            self._active = spec
            return
        entries = []
        for adapter_id, weight in spec:
            entry = self._loaded.get(adapter_id)
            if entry is None:
                raise AdapterError(f"{adapter_id}: not loaded")
            entries.append((entry, weight))
        # no adapters = an empty active list, not PEFT's disable switch: the lean decoder then still reads the
        # base weights from its fp16 packs (it falls back to the slower full PEFT forward for disabled layers)
        names = [entry.name for entry, _ in entries]
        for layer in self._layers:
            layer.set_adapter(names, inference_mode=True)
        for entry, weight in entries:
            for layer, base in entry.base_scaling:
                layer.scaling[entry.name] = base * weight
        self._active = spec

    def _make_room(self) -> None:
        while len(self._loaded) >= self._max_loaded:
            victim = next((i for i in self._loaded if not self._pins[i]), None)
            if victim is None:
                return  # every loaded adapter is in use: go over the bound rather than fail a request
            self._delete(victim)

    def _load(self, adapter_id: str, folder: Path, signature: tuple[int, int]) -> None:
        check_adapter_fits(self.lm, folder)
        name = f"a{next(self._names)}"
        try:
            if self._peft is None:
                from peft import PeftModel

                self._peft = PeftModel.from_pretrained(self.lm.model, str(folder), adapter_name=name)
                self._peft.eval()
            else:
                self._peft.load_adapter(str(folder), adapter_name=name)
        except (ValueError, RuntimeError, KeyError, OSError) as exc:
            raise AdapterError(f"{folder}: PEFT could not load the adapter ({str(exc).splitlines()[0][:200]})") from exc
        from peft.tuners.tuners_utils import BaseTunerLayer

        self._layers = [m for m in self._peft.modules() if isinstance(m, BaseTunerLayer)]
        scaling = [(layer, layer.scaling[name]) for layer in self._layers if name in getattr(layer, "scaling", {})]
        self._loaded[adapter_id] = _Loaded(name, folder, signature, scaling)
        self._active = None  # PEFT may have changed which adapters are active

    def _delete(self, adapter_id: str) -> None:
        entry = self._loaded.pop(adapter_id)
        assert self._peft is not None
        self._peft.delete_adapter(entry.name)
        from peft.tuners.tuners_utils import BaseTunerLayer

        self._layers = [m for m in self._peft.modules() if isinstance(m, BaseTunerLayer)]
        self._active = None


def normalise_spec(pairs: Sequence[tuple[str, float]]) -> AdapterSpec:
    """One entry per id (weights of a repeated id add up), in first-seen order."""
    merged: dict[str, float] = {}
    for adapter_id, weight in pairs:
        merged[adapter_id] = merged.get(adapter_id, 0.0) + float(weight)
    return tuple(merged.items())
