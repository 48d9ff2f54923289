"""What the OpenVINO engine must apply for a torch model as it stands: its LoRAs, as the traced model's slot values.

One walk over the model's modules (`scan`) finds every LoRA term (PEFT layers' active adapters, and the LoRAs
loracle.model.overlay records for the weight learners), refuses what the traced model cannot run (forward hooks,
LoRA variants, LoRA outside the projections), and collects the base weights for the engine's freshness check.
Turning the terms into slot values (transposes, stacking, block-diagonal B) is the costly part of switching
adapters, so `ValuesCache` keeps the values of the last few term sets beside a copy of the factors they were made
from, and reuses them only when every factor is equal in content to that copy: an adapter changed in any way (in
place, through `.data`, or replaced) gets new values.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from loracle.model.lean import _plain_lora_base
from loracle.model.ov_graph import SlotPart
from loracle.model.overlay import overlays

PEFT_PREFIX = "base_model.model."
#: slot -> (A [in, rank], B [rank, out]) as float32 arrays, scaling folded into B
SlotValues = dict[str, tuple[np.ndarray, np.ndarray]]
#: module path -> (A^T [in, r], (B scaling)^T [r, out]), every LoRA on that projection stacked by rank
Factors = dict[str, tuple[torch.Tensor, torch.Tensor]]


class EngineUnavailable(Exception):
    """The engine cannot decode this model as it stands; the message says why in one line."""


@dataclass(frozen=True)
class Term:
    """One LoRA on one projection: adds scale * B (A x), A [r, in], B [out, r]."""

    path: str
    a: torch.Tensor
    b: torch.Tensor
    scale: float


@dataclass(frozen=True)
class Scan:
    """What one walk over a model found: its LoRA terms in a fixed order, and its base weights by name."""

    terms: list[Term]
    weights: dict[str, torch.Tensor]


def scan(model: nn.Module, slots: set[str] | None = None) -> Scan:
    """Walk `model` once (in named_modules' order): its LoRA terms and base weights (named as in the unwrapped model,
    PEFT layers looked through). With `slots` (the projections the traced model has a slot for), raise
    EngineUnavailable for what the engine cannot apply."""
    terms: list[Term] = []
    hooked: dict[str, int] = {}
    for overlay in overlays(model):
        for path, (a, b) in overlay.factors.items():
            terms.append(Term(path, a.detach(), b.detach(), float(overlay.scale)))
            hooked[path] = hooked.get(path, 0) + (not overlay.merged)
    weights: dict[str, torch.Tensor] = {}
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    seen: set[int] = set()
    # (name, name relative to `base` if this module's weights are base weights, else None, module)
    stack: list[tuple[str, str | None, nn.Module]] = [("", "" if model is base else None, model)]
    while stack:
        name, relative, module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        if slots is not None and (module._forward_pre_hooks or module._forward_hooks):
            _refuse_hooks(name, module, hooked)
        children = module._modules
        if "lora_A" in children and "base_layer" in children:  # (hasattr is slow on modules)
            terms += _peft_terms(name.removeprefix(PEFT_PREFIX), module)
        if relative is not None and module._parameters:
            _add_weights(weights, relative, module, seen)
        prefix = f"{name}." if name else ""
        stack += [
            (prefix + key, _child_relative(relative, key, child is base), child)
            for key, child in reversed(children.items())
            if child is not None
        ]
    if slots is not None:
        for term in terms:
            if term.path not in slots:
                raise EngineUnavailable(f"{term.path}: the engine applies LoRA to attention and MLP projections only")
    return Scan(terms, weights)


def _refuse_hooks(name: str, module: nn.Module, hooked: dict[str, int]) -> None:
    """EngineUnavailable if `module` has hooks besides those of the LoRAs recorded as hooked (`hooked`, by path)."""
    if module._forward_pre_hooks or len(module._forward_hooks) > hooked.get(name.removeprefix(PEFT_PREFIX), 0):
        raise EngineUnavailable(f"{name or 'the model'} has forward hooks, which the engine cannot run")


def _child_relative(relative: str | None, key: str, is_base: bool) -> str | None:
    """The name relative to the base model of the child `key` of a module named `relative` there (None: outside it,
    or a LoRA factor or a PEFT copy, whose weights are not base weights)."""
    if is_base:
        return ""
    if relative is None or "lora_" in key or key == "modules_to_save":
        return None
    return f"{relative}.{key}" if relative else key


def _add_weights(weights: dict[str, torch.Tensor], name: str, module: nn.Module, seen: set[int]) -> None:
    """`module`'s own base weights (not LoRA factors), named as named_parameters names them, into `weights`."""
    for key, param in module._parameters.items():
        if param is not None and id(param) not in seen:
            seen.add(id(param))
            if "lora_" not in key:
                full = f"{name}.{key}" if name else key
                weights[full.replace(".base_layer.", ".")] = param.detach()


def _peft_terms(path: str, module: nn.Module) -> list[Term]:
    """The active adapters of one PEFT LoRA layer (none if merged or disabled); EngineUnavailable for variants."""
    names = [name for name in module.active_adapters if name in module.lora_A]
    if _plain_lora_base(module) is None:
        if getattr(module, "merged", False) or getattr(module, "disable_adapters", False) or not names:
            return []  # merged: caught by the weights check; disabled or inactive: nothing to add
        raise EngineUnavailable(f"{path}: a LoRA variant (DoRA, bias, ...) the engine cannot apply")
    return [
        Term(path, module.lora_A[n].weight.detach(), module.lora_B[n].weight.detach(), float(module.scaling[n]))
        for n in names
    ]


def stacked(terms: list[Term]) -> Factors:
    """The terms of each projection as one low-rank product, scaling folded into B."""
    parts: dict[str, list[Term]] = {}
    for term in terms:
        parts.setdefault(term.path, []).append(term)
    return {
        path: (torch.cat([t.a.t() for t in group], dim=1), torch.cat([(t.b * t.scale).t() for t in group], dim=0))
        for path, group in parts.items()
    }


def slot_values(factors: Factors, parts: dict[str, SlotPart]) -> SlotValues:
    """The LoRA states of each slot in use: its projections' A side by side, their B in block-diagonal form (each
    projection's rows of B fill its own columns of the slot's output, zeros elsewhere)."""
    members: dict[str, list[tuple[SlotPart, torch.Tensor, torch.Tensor]]] = {}
    widths: dict[str, int] = {}
    for path, part in parts.items():
        widths[part.slot] = max(widths.get(part.slot, 0), part.stop)
        if path in factors:
            members.setdefault(part.slot, []).append((part, *factors[path]))
    values: SlotValues = {}
    for slot, found in members.items():
        a = torch.cat([a_t for _, a_t, _ in found], dim=1).detach().float()
        b = torch.zeros(a.shape[1], widths[slot])
        row = 0
        for part, _, bs_t in found:
            b[row : row + bs_t.shape[0], part.start : part.stop] = bs_t.detach().float()
            row += bs_t.shape[0]
        values[slot] = (a.contiguous().numpy(), b.numpy())
    return values


class ValuesCache:
    """Slot values of the last `size` term sets, each beside a copy of the factors it was made from."""

    def __init__(self, parts: dict[str, SlotPart], size: int) -> None:
        self.parts, self.size = parts, size
        self._entries: OrderedDict[Hashable, list[tuple[list[torch.Tensor], SlotValues]]] = OrderedDict()
        self._count = 0
        self._lock = threading.Lock()

    def values(self, terms: list[Term]) -> SlotValues:
        """The slot values of `terms`: those made before from factors equal in content to theirs, else new ones."""
        signature = tuple((t.path, t.scale, t.a.dtype, t.b.dtype, t.a.shape, t.b.shape) for t in terms)
        tensors = [x for t in terms for x in (t.a, t.b)]
        with self._lock:
            for copies, values in self._entries.get(signature, ()):
                if all(torch.equal(copy, tensor) for copy, tensor in zip(copies, tensors, strict=True)):
                    self._entries.move_to_end(signature)
                    return values
        values = slot_values(stacked(terms), self.parts)
        copies = [tensor.clone() for tensor in tensors]
        with self._lock:
            self._entries.setdefault(signature, []).append((copies, values))
            self._entries.move_to_end(signature)
            self._count += 1
            while self._count > self.size:
                oldest = next(iter(self._entries))
                self._entries[oldest].pop(0)
                self._count -= 1
                if not self._entries[oldest]:
                    del self._entries[oldest]
        return values
