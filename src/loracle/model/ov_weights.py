"""Store an OpenVINO model's projection weights in as few bits as represent them exactly, in groups of 32.

Decoding reads every weight once per token, so fewer bytes per weight is more tokens per second. A model
dequantised from a GGUF holds, in each block of 32 inputs, values on a 4-bit (Q4_*) or 8-bit (Q8_0) grid; those
grids are found again here and stored as u4 or i8 with a float scale (and zero point) per group, which the CPU
plugin decompresses inside its matrix kernels. Weights on no such grid are stored as u8 per group (error at most
1/510 of the group's range). Groups run along the input dimension, like GGUF's blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GROUP = 32
#: a grid "fits" when it reproduces every weight to within this fraction of the group's step
EXACT = 1e-3


@dataclass(frozen=True)
class Grid:
    """Integer codes and the per-group affine map back to floats: w = (codes - zero) * scale."""

    kind: str  # "u4", "i8" or "u8"
    codes: np.ndarray  # [out, groups, GROUP]
    scale: np.ndarray  # [out, groups, 1] float32
    zero: np.ndarray | None  # [out, groups, 1] float32, None for symmetric grids
    error: float  # largest reconstruction error as a fraction of the largest step


def fit_grid(weight: np.ndarray, kind: str) -> Grid:
    """Codes for `weight` [out, in] (in a multiple of GROUP) on a per-group grid of `kind`."""
    rows, cols = weight.shape
    blocks = weight.reshape(rows, cols // GROUP, GROUP).astype(np.float64)
    if kind == "i8":
        scale = np.abs(blocks).max(axis=-1, keepdims=True) / 127
        scale[scale == 0] = 1.0
        codes = np.clip(np.round(blocks / scale), -127, 127)
        zero = None
        rebuilt = codes * scale
    else:
        levels = 15 if kind == "u4" else 255
        low = blocks.min(axis=-1, keepdims=True)
        scale = (blocks.max(axis=-1, keepdims=True) - low) / levels
        scale[scale == 0] = 1.0
        codes = np.clip(np.round((blocks - low) / scale), 0, levels)
        zero = -low / scale
        rebuilt = (codes - zero) * scale
    error = float(np.abs(rebuilt - blocks).max() / scale.max())
    dtype = np.int8 if kind == "i8" else np.uint8
    return Grid(kind, codes.astype(dtype), scale.astype(np.float32), _f32(zero), error)


def _f32(array: np.ndarray | None) -> np.ndarray | None:
    return None if array is None else array.astype(np.float32)


def best_grid(weight: np.ndarray) -> Grid:
    """The smallest grid that holds `weight` exactly (u4, then i8), else u8."""
    for kind in ("u4", "i8"):
        grid = fit_grid(weight, kind)
        if grid.error <= EXACT:
            return grid
    return fit_grid(weight, "u8")


def compress(model) -> dict[str, int]:
    """Replace every MatMul's float weight constant [out, in] (in a multiple of GROUP) by its grid, in place.

    Returns how many weights went to each kind of grid.
    """
    import openvino as ov
    import openvino.opset13 as ops

    counts: dict[str, int] = {}
    types = {"u4": ov.Type.u4, "i8": ov.Type.i8, "u8": ov.Type.u8}
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        source = op.input_value(1).get_node()
        if source.get_type_name() != "Constant":
            continue
        weight = source.get_data()
        transposed = op.get_attributes()["transpose_b"]
        if weight.ndim != 2 or weight.dtype != np.float32:
            continue
        matrix = weight if transposed else weight.T
        if matrix.shape[1] % GROUP:
            continue
        grid = best_grid(matrix)
        node = ops.convert(ops.constant(grid.codes, dtype=types[grid.kind]), ov.Type.f32)
        if grid.zero is not None:
            node = ops.subtract(node, ops.constant(grid.zero))
        node = ops.reshape(ops.multiply(node, ops.constant(grid.scale)), ops.constant(np.array(matrix.shape)), False)
        if not transposed:
            node = ops.transpose(node, ops.constant(np.array([1, 0])))
        op.input(1).replace_source_output(node.output(0))
        counts[grid.kind] = counts.get(grid.kind, 0) + matrix.size
    return counts
