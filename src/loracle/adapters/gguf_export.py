"""Export a PEFT LoRA adapter to a GGUF LoRA file that llama.cpp loads (`llama-cli --lora FILE`).

The layout follows what llama.cpp's own converter produces for llama-architecture models:
- metadata general.architecture, general.type = "adapter", adapter.type = "lora", adapter.lora.alpha;
- per adapted projection, two tensors named after llama.cpp's base tensor plus ".lora_a" / ".lora_b",
  e.g. blk.3.ffn_down.weight.lora_a, holding PEFT's A ([r, in]) and B ([out, r]) as they are;
- llama.cpp stores attn_q / attn_k rows in its own rotary order, so B of q_proj and k_proj is permuted the
  way its converter permutes the base weights (A is untouched: the permutation acts on output rows).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from loracle.adapters.manifest import AdapterManifest
from loracle.errors import AdapterError
from loracle.model.adapters import ADAPTER_WEIGHTS, read_adapter_config

#: Hugging Face llama module name -> llama.cpp tensor name inside blk.N
LLAMA_TENSOR_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_KEY_RE = re.compile(r"^(?:base_model\.model\.)?model\.layers\.(\d+)\.(.+)\.lora_([AB])\.weight$")


def llama_rotary_permute(rows: torch.Tensor, n_head: int) -> torch.Tensor:
    """Reorder output rows from Hugging Face's rotary layout (halves) to llama.cpp's (interleaved pairs)."""
    out = rows.shape[0]
    return rows.reshape(n_head, 2, out // n_head // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def gguf_tensor_name(module_path: str) -> str:
    """llama.cpp's name of the base weight a PEFT key adapts, e.g. blk.3.ffn_down.weight."""
    match = _KEY_RE.match(module_path + ".lora_A.weight")
    if not match or match.group(2) not in LLAMA_TENSOR_NAMES:
        raise AdapterError(f"{module_path}: no llama.cpp tensor for this module (supported: llama projections)")
    return f"blk.{match.group(1)}.{LLAMA_TENSOR_NAMES[match.group(2)]}.weight"


def export_gguf(folder: Path, out_path: Path, *, n_head: int, n_kv_head: int, dtype: str = "f32") -> Path:
    """Write `folder`'s adapter as a GGUF LoRA at `out_path` (atomically); returns the path."""
    import gguf

    config = read_adapter_config(folder)
    try:
        tensors = load_file(str(folder / ADAPTER_WEIGHTS))
    except Exception as exc:  # safetensors raises its own error types on corrupt files
        raise AdapterError(f"{folder / ADAPTER_WEIGHTS}: unreadable ({exc})") from exc
    np_dtype = {"f32": np.float32, "f16": np.float16}.get(dtype)
    if np_dtype is None:
        raise AdapterError(f"unknown GGUF dtype {dtype!r} (f32 or f16)")
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = _KEY_RE.match(key)
        if not match:
            raise AdapterError(f"{folder}: tensor {key} is not a LoRA matrix of a llama layer; cannot export")
        module = f"model.layers.{match.group(1)}.{match.group(2)}"
        pairs.setdefault(gguf_tensor_name(module), {})[match.group(3)] = tensor.float()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    staging = out_path.parent / f".{out_path.name}.writing"
    writer = gguf.GGUFWriter(path=staging, arch="llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    writer.add_name(_adapter_name(folder))
    for name in sorted(pairs, key=_natural_key):
        pair = pairs[name]
        if set(pair) != {"A", "B"}:
            raise AdapterError(f"{folder}: {name} has lora_{''.join(pair)} but not both A and B")
        lora_b = pair["B"]
        if ".attn_q." in name:
            lora_b = llama_rotary_permute(lora_b, n_head)
        elif ".attn_k." in name:
            lora_b = llama_rotary_permute(lora_b, n_kv_head)
        writer.add_tensor(f"{name}.lora_a", pair["A"].numpy().astype(np_dtype))
        writer.add_tensor(f"{name}.lora_b", lora_b.contiguous().numpy().astype(np_dtype))
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(staging, out_path)
    finally:
        staging.unlink(missing_ok=True)
    return out_path


def _adapter_name(folder: Path) -> str:
    try:
        return AdapterManifest.read(folder).id
    except AdapterError:
        return folder.name


def _natural_key(name: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))
