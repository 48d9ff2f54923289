"""Half-precision copies of linear weights for decoding, packed for fbgemm's fp16 GEMM.

Decoding one token reads every weight once, so on a CPU its speed is set by memory bandwidth. fbgemm
keeps the weights as fp16 (half the bytes) and converts them to fp32 inside its kernel: activations and
accumulation stay fp32, and a weight dequantised from a 4-bit GGUF is represented almost exactly in fp16.
The generate benchmark measures the gain against fp32 and the plain transformers path.

Packing costs ~20 ms of CPU per million weights, so packs are kept per module and reused by later generations;
each pack remembers a sample of its source weight and is rebuilt if the weight changed (e.g. an adapter was
merged into it in place, which bumps neither the tensor's version nor its address).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import torch
from torch import nn

#: decoder "auto" packs fp16 weights only for generations that may be at least this long: packing the embedded
#: model takes a few seconds, repaid after some tens of tokens (the generate benchmark's "fp16 packing pays off after";
#: noisy on the shared VM, hence a margin); packs that already exist are always used
FP16_MIN_NEW_TOKENS = 96
#: below this many weights the fp32 kernel is as fast and packing isn't worth it
MIN_WEIGHTS = 1 << 16
_SAMPLE_STRIDE = 4099


def fp16_packing_available() -> bool:
    """fbgemm (x86 CPUs) provides the fp16 linear kernels; other backends do not."""
    engines = torch.backends.quantized.supported_engines
    return "fbgemm" in engines and hasattr(torch.ops.quantized, "linear_dynamic_fp16")


class _Pack:
    __slots__ = ("packed", "ptr", "sample", "version")

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        detached = weight.detach()
        self.ptr = detached.data_ptr()
        self.version = detached._version
        self.sample = _sample(detached)
        self.packed = torch.ops.quantized.linear_prepack_fp16(detached.float().contiguous(), _float(bias))

    def fresh(self, weight: torch.Tensor) -> bool:
        detached = weight.detach()
        return (
            detached.data_ptr() == self.ptr
            and detached._version == self.version
            and torch.equal(_sample(detached), self.sample)
        )


def _sample(weight: torch.Tensor) -> torch.Tensor:
    return weight.reshape(-1)[::_SAMPLE_STRIDE].clone()


def _float(bias: torch.Tensor | None) -> torch.Tensor | None:
    return None if bias is None else bias.detach().float().contiguous()


_PACKS: weakref.WeakKeyDictionary[nn.Linear, _Pack] = weakref.WeakKeyDictionary()


def packed_fp16(module: nn.Linear) -> object | None:
    """The module's weight packed as fp16 (reused while the weight is unchanged), or None if not worth it."""
    if not _packable(module):
        return None
    pack = _PACKS.get(module)
    if pack is None or not pack.fresh(module.weight):
        with torch.no_grad():
            pack = _Pack(module.weight, module.bias)
        _PACKS[module] = pack
    return pack.packed


def all_packed(modules: Iterable[nn.Module]) -> bool:
    """Whether the packable modules among `modules` all have fresh packs (so fp16 decoding costs no setup).

    False when there is nothing to pack, or when a weight changed in place since (e.g. an adapter was merged
    in), which would mean repacking.
    """
    packable = [m for m in modules if _packable(m)]
    return bool(packable) and all((pack := _PACKS.get(m)) is not None and pack.fresh(m.weight) for m in packable)


def _packable(module: nn.Module) -> bool:
    return type(module) is nn.Linear and module.weight.device.type == "cpu" and module.weight.numel() >= MIN_WEIGHTS


def prepare(modules: Iterable[nn.Module]) -> dict[nn.Module, object]:
    """Packs for every packable plain linear among `modules` (others are left to their own forward)."""
    packs: dict[nn.Module, object] = {}
    for module in modules:
        pack = packed_fp16(module) if isinstance(module, nn.Linear) else None
        if pack is not None:
            packs[module] = pack
    return packs


def linear_fp16(x: torch.Tensor, pack: object) -> torch.Tensor:
    """x @ W.T + b with W read from its fp16 pack (fp32 in, fp32 out)."""
    return torch.ops.quantized.linear_dynamic_fp16(x, pack)
