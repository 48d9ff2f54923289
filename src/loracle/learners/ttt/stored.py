"""What the ttt learner computes once per base model, kept in the user's cache folder.

The general examples (a decode of every general prompt) and the whiteners (a forward pass over the general
text and an eigendecomposition per layer) take a minute or two on 2 cores and are the same for every
document, so they are kept in memory for the process and on disk under <cache>/ttt/, keyed by the base
model's fingerprint and what they depend on. Entries are written atomically; one that can't be read is
recomputed.
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


def stored(kind: str, key: str, build: Callable[[], Tensors]) -> Tensors:
    """The tensors `build` makes, from memory, else from <cache>/ttt/<kind>-<hash of key>.safetensors, else
    built and kept in both."""
    name = f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:32]}"
    if name in _MEMORY:
        return _MEMORY[name]
    path = cache_root() / "ttt" / f"{name}.safetensors"
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
