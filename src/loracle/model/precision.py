"""Whether bfloat16 matrix products beat float32 ones on this machine, measured once per device type.

Training steps run their matrix products in bfloat16 (torch.autocast: weights and optimiser state stay float32,
so do the residual stream and the loss) only where the hardware multiplies bfloat16 natively: on CPUs with
AVX512-BF16 or AMX it is about twice as fast, on others it is emulated and slower. Rather than read CPU flags,
the choice times the product it is for: a forward and backward pass of one MLP-sized layer in each type.
"""

from __future__ import annotations

import time
from functools import cache
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # configs import this module's option type without paying for torch
    import torch

#: what a training config's `precision` option takes
Precision = Literal["auto", "float32", "bfloat16"]
PRECISION_HELP = "matrix products while learning (auto: bfloat16 where this machine multiplies it faster)"

#: bfloat16 is used when it takes at most this share of float32's time
FASTER = 0.8


@cache
def bf16_is_faster(device_type: str) -> bool:
    """True when an MLP-sized matrix product's forward and backward pass runs clearly faster in bfloat16 (on
    CUDA: when the GPU supports bfloat16)."""
    import torch

    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device_type != "cpu":
        return False
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 576, generator=generator)
    w = torch.randn(1536, 576, generator=generator)
    timings: dict[torch.dtype, float] = {}
    for dtype in (torch.float32, torch.bfloat16) * 3:  # interleaved, best of three: noise hits both alike
        a, b = x.to(dtype).requires_grad_(), w.to(dtype)
        start = time.perf_counter()
        for _ in range(4):
            (a @ b.T).sum().backward()
        timings[dtype] = min(timings.get(dtype, float("inf")), time.perf_counter() - start)
    return timings[torch.bfloat16] <= FASTER * timings[torch.float32]


def autocast_bf16(device: torch.device, precision: Precision) -> torch.autocast:
    """The autocast context for `precision` ("float32", "bfloat16", or "auto": bfloat16 where it is faster)."""
    import torch

    use = precision == "bfloat16" or (precision == "auto" and bf16_is_faster(device.type))
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use)
