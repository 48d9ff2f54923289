"""LoRA factors a learner applies to a model outside PEFT (forward hooks, or merged into the weights in place).

The weight learners (loracle.learners.lora) record what they apply here while it is applied, so that the decode
engine, which runs the weights it traced rather than the torch modules, can apply the same factors itself.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Overlay:
    """module path -> (A [r, in], B [out, r]), adding B (A x) * scale to that module's output."""

    factors: Mapping[str, tuple[torch.Tensor, torch.Tensor]]
    scale: float
    #: True: already added into the module's weight in place; False: added by a forward hook
    merged: bool
    #: merged only: each module's weight as it was before the merge (module path -> tensor)
    originals: Mapping[str, torch.Tensor] | None = None


_ACTIVE: weakref.WeakKeyDictionary[nn.Module, list[Overlay]] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def recorded(model: nn.Module, overlay: Overlay) -> Iterator[None]:
    """`overlay` listed as applied to `model` while the context is open."""
    _ACTIVE.setdefault(model, []).append(overlay)
    try:
        yield
    finally:
        _ACTIVE[model].remove(overlay)


def overlays(model: nn.Module) -> list[Overlay]:
    """The overlays applied to `model` now, oldest first."""
    return list(_ACTIVE.get(model, ()))


@contextlib.contextmanager
def unmerged(model: nn.Module) -> Iterator[None]:
    """`model`'s weights as they were before any recorded merge, while the context is open (restored exactly after)."""
    restore: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for overlay in overlays(model):
            for path, original in (overlay.originals or {}).items() if overlay.merged else ():
                if path not in restore:  # the oldest merge holds the weight as it was before all of them
                    weight = model.get_submodule(path).weight
                    restore[path] = weight.detach().clone()
                    weight.copy_(original)
    try:
        yield
    finally:
        with torch.no_grad():
            for path, current in restore.items():
                model.get_submodule(path).weight.copy_(current)
