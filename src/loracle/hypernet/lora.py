"""Generated LoRA weights: combining them by rank concatenation, applying them with hooks, exporting to PEFT.

A LoRA here is a dict module path -> (A [r, in], B [out, r]); its effect on a module is x @ A.T @ B.T
(scaling 1, which is what PEFT applies when lora_alpha == r).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from loracle.adapters.peft_format import peft_key

Lora = dict[str, tuple[torch.Tensor, torch.Tensor]]


def concat_ranks(loras: Sequence[Lora]) -> Lora:
    """One LoRA whose delta is the sum of the given LoRAs' deltas: stack the A rows and the B columns."""
    if not loras:
        return {}
    paths = list(loras[0])
    return {
        path: (torch.cat([lora[path][0] for lora in loras], dim=0), torch.cat([lora[path][1] for lora in loras], dim=1))
        for path in paths
    }


def lora_rank(lora: Lora) -> int:
    return next(iter(lora.values()))[0].shape[0] if lora else 0


def lora_bytes(lora: Lora, bytes_per_value: int = 4) -> int:
    return sum((a.numel() + b.numel()) * bytes_per_value for a, b in lora.values())


@contextlib.contextmanager
def applied(model: nn.Module, lora: Lora) -> Iterator[None]:
    """Add the LoRA's delta to the named modules' outputs while the context is open (gradients flow to A, B)."""
    modules = dict(model.named_modules())
    handles = []
    try:
        for path, (a, b) in lora.items():
            handles.append(modules[path].register_forward_hook(_delta_hook(a, b)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _delta_hook(a: torch.Tensor, b: torch.Tensor):
    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        x = inputs[0]
        return output + (x @ a.to(x.dtype).T) @ b.to(x.dtype).T

    return hook


def to_peft_tensors(lora: Lora) -> dict[str, torch.Tensor]:
    """The LoRA under PEFT's saved tensor names."""
    tensors: dict[str, torch.Tensor] = {}
    for path, (a, b) in lora.items():
        tensors[peft_key(path, "A")] = a.detach()
        tensors[peft_key(path, "B")] = b.detach()
    return tensors


def to_flat(lora: Lora, prefix: str) -> dict[str, torch.Tensor]:
    """Flat tensors for a safetensors file: <prefix>/<path>/A and /B."""
    flat: dict[str, torch.Tensor] = {}
    for path, (a, b) in lora.items():
        flat[f"{prefix}/{path}/A"] = a.detach()
        flat[f"{prefix}/{path}/B"] = b.detach()
    return flat


def from_flat(tensors: dict[str, torch.Tensor], prefix: str) -> Lora:
    paths = sorted({k[len(prefix) + 1 : -2] for k in tensors if k.startswith(prefix + "/")})
    return {p: (tensors[f"{prefix}/{p}/A"], tensors[f"{prefix}/{p}/B"]) for p in paths}
