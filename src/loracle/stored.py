"""Tensors computed once and kept in the user's cache folder: in memory for the process and on disk.

What takes long to compute and depends only on its inputs: the ttt learner's general examples and
whiteners (a minute or two on 2 cores, the same for every document), the router's embeddings of each
adapter's routing keys. Each entry is keyed by a hash of everything it depends on (the base model's
fingerprint, the texts, ...), written atomically; one that can't be read is recomputed.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from loracle.atomic import write_bytes_atomic
from loracle.model.cache import cache_root

Tensors = dict[str, torch.Tensor]
_MEMORY: dict[str, Tensors] = {}


def stored(folder: str, kind: str, key: str, build: Callable[[], Tensors]) -> Tensors:
    """The tensors `build` makes, from memory, else from <cache>/<folder>/<kind>-<hash of key>.safetensors,
    else built and kept in both."""
    name = f"{folder}/{kind}-{hashlib.sha256(key.encode()).hexdigest()[:32]}"
    if name in _MEMORY:
        return _MEMORY[name]
    path = cache_root() / f"{name}.safetensors"
    tensors = None
    if path.is_file():
        try:
            tensors = load(path.read_bytes())
        except (SafetensorError, OSError, ValueError):
            tensors = None
    if tensors is None:
        tensors = build()
        with contextlib.suppress(OSError):  # a read-only cache folder costs only the time to rebuild next run
            write_bytes_atomic(path, save({k: v.contiguous() for k, v in tensors.items()}))
    _MEMORY[name] = tensors
    return tensors
