"""Prefix adapters of a knowledge base, read once and kept: what `ask --kb` places before a question.

LoRA adapters go into the model through PEFT's layers (adapters.pool); a prefix adapter (the memory learner's)
is a key/value cache the decoder starts from instead (loracle.model.prefix), so it needs no PEFT wrapping and
combines with whatever LoRA adapters are active. Each folder is read when first asked for and again when its
weights change on disk (`watch` recompiling it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from loracle.adapters.pool import AdapterSpec, folder_signature
from loracle.model.loader import LoadedModel
from loracle.model.prefix import is_prefix_adapter, join_prefixes, load_prefix_adapter


class PrefixAdapters:
    """Which adapters are prefixes, and their caches, by adapter id (`resolve` gives an id's folder)."""

    def __init__(self, lm: LoadedModel, resolve: Callable[[str], Path]) -> None:
        self.lm = lm
        self._resolve = resolve
        self._lock = threading.Lock()
        self._kinds: dict[str, tuple[tuple[Path, tuple[int, int]], bool]] = {}
        self._caches: dict[str, tuple[tuple[Path, tuple[int, int]], torch.Tensor]] = {}

    def _key(self, adapter_id: str) -> tuple[Path, tuple[int, int]]:
        folder = self._resolve(adapter_id)
        return folder, folder_signature(folder)

    def is_prefix(self, adapter_id: str) -> bool:
        key = self._key(adapter_id)
        with self._lock:
            known = self._kinds.get(adapter_id)
            if known is None or known[0] != key:
                known = self._kinds[adapter_id] = (key, is_prefix_adapter(key[0]))
            return known[1]

    def cache(self, adapter_id: str) -> torch.Tensor:
        """The adapter's key/value cache, checked against the base model (AdapterError naming the folder)."""
        key = self._key(adapter_id)
        with self._lock:
            known = self._caches.get(adapter_id)
            if known is None or known[0] != key:
                known = self._caches[adapter_id] = (key, load_prefix_adapter(self.lm, key[0]))
            return known[1]

    def split(self, spec: AdapterSpec) -> tuple[AdapterSpec, tuple[str, ...]]:
        """The spec's LoRA adapters (for the pool), and the ids of its prefix adapters, in order (a weight does not
        apply to a prefix)."""
        prefixes = tuple(adapter_id for adapter_id, _ in spec if self.is_prefix(adapter_id))
        return tuple((adapter_id, weight) for adapter_id, weight in spec if adapter_id not in prefixes), prefixes

    def joined(self, adapter_ids: Sequence[str]) -> torch.Tensor | None:
        """The adapters' caches one after another, in the order given (None for none)."""
        return join_prefixes(self.lm.model, [self.cache(adapter_id) for adapter_id in adapter_ids])
