"""The one LoRA mechanism the weight learners share: a delta hook, an exact merge, and the PEFT export.

A LoRA here is a mapping of module paths (e.g. "model.layers.3.mlp.down_proj") to factors (A [r, in],
B [out, r]) and a `scale`: it adds B(A x) * scale to the module's output, as PEFT's LoRA layers do with
scaling = lora_alpha / r. The mapping may compute its factors when read (ttt's gated adapters fold a mask
into A), so hooks read it at every forward and gradients reach whatever the factors are made from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from loracle.adapters.peft_format import peft_key, write_lora_adapter
from loracle.model.overlay import Overlay, recorded

Factors = Mapping[str, tuple[torch.Tensor, torch.Tensor]]
#: a LoRA held as plain tensors (what the hypernetwork writes), at scale 1
Lora = dict[str, tuple[torch.Tensor, torch.Tensor]]


def lora_delta(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """What a LoRA with factors `a`, `b` adds to a module's output for its input `x`."""
    return F.linear(F.linear(x, a.to(x.dtype)), b.to(x.dtype)) * scale


def _adding(delta: Callable[[str, torch.Tensor], torch.Tensor], path: str):
    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        return output + delta(path, inputs[0]).to(output.dtype)

    return hook


@contextlib.contextmanager
def hooked_deltas(
    model: nn.Module, paths: Iterable[str], delta: Callable[[str, torch.Tensor], torch.Tensor]
) -> Iterator[None]:
    """`delta(path, x)` added to the output of each module in `paths` (x its input) by forward hooks while the
    context is open; the weights are never touched, so gradients flow to whatever the delta is made from."""
    handles = []
    try:
        for path in paths:
            handles.append(model.get_submodule(path).register_forward_hook(_adding(delta, path)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def hooked(model: nn.Module, factors: Factors, scale: float = 1.0) -> Iterator[None]:
    """The LoRA added to its modules' outputs by forward hooks while the context is open (the weights are never
    touched, so gradients flow to the factors and other users of the model see it only inside). It is recorded
    as an overlay for the decode engine, which runs no hooks and applies the factors itself."""
    with (
        hooked_deltas(model, list(factors), lambda path, x: lora_delta(x, *factors[path], scale)),
        recorded(model, Overlay(factors, scale, merged=False)),
    ):
        yield


@contextlib.contextmanager
def merged(model: nn.Module, factors: Factors, scale: float = 1.0) -> Iterator[None]:
    """The LoRA added into its modules' weights while the context is open, and the exact weights restored after.
    Merged, a long decode pays nothing per token for the adapter and may use packed copies of the weights."""
    weights = {path: model.get_submodule(path).weight for path in factors}
    saved = {path: weight.detach().clone() for path, weight in weights.items()}
    fixed = {path: (a.detach(), b.detach()) for path, (a, b) in factors.items()}
    with torch.no_grad():
        for path, weight in weights.items():
            a, b = fixed[path]
            weight += (b @ a * scale).to(weight.dtype)
    try:
        # recorded for the decode engine, which adds it to the weights it traced
        with recorded(model, Overlay(fixed, scale, merged=True, originals=saved)):
            yield
    finally:
        with torch.no_grad():
            for path, weight in weights.items():
                weight.copy_(saved[path])


def concat_ranks(loras: Sequence[Factors]) -> Lora:
    """One LoRA whose delta is the sum of the given LoRAs' deltas (all at scale 1): stack the A rows and the B
    columns."""
    if not loras:
        return {}
    return {
        path: (torch.cat([lora[path][0] for lora in loras], dim=0), torch.cat([lora[path][1] for lora in loras], dim=1))
        for path in loras[0]
    }


def lora_rank(factors: Factors) -> int:
    return next(iter(factors.values()))[0].shape[0] if factors else 0


def write_peft(
    folder: Path,
    factors: Factors,
    *,
    scale: float,
    base_model: str,
    manifest: dict[str, Any],
    dtype: torch.dtype = torch.float32,
) -> int:
    """Write the LoRA as a plain PEFT adapter folder (`PeftModel.from_pretrained` loads it and adds the same
    delta), its weights in `dtype`; returns the bytes of its weights file."""
    tensors: dict[str, torch.Tensor] = {}
    for path, (a, b) in factors.items():
        tensors[peft_key(path, "A")] = a.detach()
        tensors[peft_key(path, "B")] = b.detach()
    rank = lora_rank(factors)
    return write_lora_adapter(
        folder,
        tensors,
        r=rank,
        alpha=scale * rank,
        target_modules=list(factors),
        base_model=base_model,
        manifest=manifest,
        dtype=dtype,
    )


def linear_paths(model: nn.Module, names: Sequence[str], layers: Sequence[int]) -> list[str]:
    """The module paths of the linear layers called one of `names` (e.g. "q_proj", "down_proj") inside decoder
    layers `layers` (model.layers.<i>...), in model order."""
    wanted, indices = set(names), {str(i) for i in layers}
    found = []
    for path, module in model.named_modules():
        parts = path.split(".")
        if (
            isinstance(module, nn.Linear)
            and parts[-1] in wanted
            and len(parts) > 3
            and parts[:2] == ["model", "layers"]
            and parts[2] in indices
        ):
            found.append(path)
    return found


def fresh_factors(model: nn.Module, paths: Sequence[str], rank: int, seed: int) -> Lora:
    """Trainable factors for each module in `paths`, initialised as PEFT does (A Kaiming-uniform, B zero), so
    the LoRA starts out adding nothing."""
    generator = torch.Generator().manual_seed(seed)
    factors: Lora = {}
    for path in paths:
        weight = model.get_submodule(path).weight
        out_features, in_features = weight.shape
        bound = in_features**-0.5  # kaiming_uniform_(a=sqrt(5)), PEFT's default for lora_A
        a = (torch.rand(rank, in_features, generator=generator) * 2 - 1) * bound
        b = torch.zeros(out_features, rank)
        factors[path] = (
            a.to(weight.device, torch.float32).requires_grad_(),
            b.to(weight.device, torch.float32).requires_grad_(),
        )
    return factors
