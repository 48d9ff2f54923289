"""Prefix adapters at answer time: a key/value cache of a few virtual positions placed before the prompt.

A prefix (PEFT's prefix tuning; loracle's memory-token learner writes one per document chunk) is held as
`kv`: [layers, 2 (keys, values), kv_heads, positions, head_dim], its keys already rotated for positions
0, 1, ... as PEFT stores them. Answering with it is decoding with the cache primed by it: the prompt then takes
the positions after the prefix, exactly as `PeftModel` runs a prefix adapter.

Several prefixes are joined one after another along the positions; each one's keys are rotated on by the
positions before it (RoPE rotations compose), so every prefix sits where a longer prefix would put it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import DynamicCache

from loracle.errors import AdapterError
from loracle.model.adapter_files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, read_adapter_config
from loracle.model.adapters import check_base_model
from loracle.model.loader import LoadedModel

#: PEFT's saved name of a prefix adapter's weights
PEFT_PREFIX_KEY = "prompt_embeddings"
PREFIX_TUNING = "PREFIX_TUNING"


def prefix_cache(kv: torch.Tensor, rows: int = 1) -> DynamicCache:
    """A cache holding the prefix for each of `rows` sequences (what PEFT builds from a prefix adapter)."""
    return DynamicCache([(layer[0].expand(rows, -1, -1, -1), layer[1].expand(rows, -1, -1, -1)) for layer in kv])


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def shift_keys(model: torch.nn.Module, kv: torch.Tensor, offset: int) -> torch.Tensor:
    """`kv` with its keys rotated on by `offset` positions (values unchanged): the prefix moved `offset` later."""
    if offset == 0:
        return kv
    decoder = getattr(model, model.base_model_prefix)
    rotary = getattr(decoder, "rotary_emb", None)
    if rotary is None:
        raise AdapterError(f"{type(model).__name__}: no rotary position embedding to place a prefix with")
    position = torch.tensor([[offset]], device=kv.device)
    cos, sin = rotary(kv, position)  # [1, 1, head_dim]
    cos, sin = cos[0, 0].to(kv.dtype), sin[0, 0].to(kv.dtype)
    keys = kv[:, 0]
    return torch.stack([keys * cos + _rotate_half(keys) * sin, kv[:, 1]], dim=1)


def join_prefixes(model: torch.nn.Module, prefixes: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """One prefix of several, one after another, each placed after those before it (None for none)."""
    placed, offset = [], 0
    for kv in prefixes:
        placed.append(shift_keys(model, kv, offset))
        offset += kv.shape[3]
    return torch.cat(placed, dim=3) if placed else None


def peft_prefix_weights(kv: torch.Tensor) -> torch.Tensor:
    """The cache as PEFT's prefix weights, [m, layers * 2 * kv_heads * head_dim]: row i holds virtual token i's
    key then value of layer 0, then of layer 1, ... (PEFT views it as [m, layers * 2, kv_heads, head_dim])."""
    return kv.permute(3, 0, 1, 2, 4).reshape(kv.shape[3], -1)


def is_prefix_adapter(folder: Path) -> bool:
    """Whether the PEFT folder holds a prefix-tuning adapter (not LoRA)."""
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("peft_type") == PREFIX_TUNING


def read_prefix_adapter(folder: Path, model: torch.nn.Module) -> torch.Tensor:
    """A prefix adapter folder's cache as `kv`, checked against the model's layers, key/value heads and head size
    (refused in one line naming the folder)."""
    config = model.config
    layers = int(config.num_hidden_layers)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
    try:
        with safe_open(str(folder / ADAPTER_WEIGHTS), framework="pt") as weights:
            flat = weights.get_tensor(PEFT_PREFIX_KEY)
    except Exception as exc:  # safetensors raises its own error types; a missing key is a KeyError
        raise AdapterError(f"{folder / ADAPTER_WEIGHTS}: not a readable prefix adapter ({exc})") from exc
    width = layers * 2 * kv_heads * head_dim
    if flat.ndim != 2 or flat.shape[1] != width:
        raise AdapterError(
            f"{folder}: a prefix of width {list(flat.shape)[1:]} does not fit this base model "
            f"({layers} layers x 2 x {kv_heads} key/value heads x {head_dim})"
        )
    weight = model.get_input_embeddings().weight
    kv = flat.reshape(flat.shape[0], layers, 2, kv_heads, head_dim).permute(1, 2, 3, 0, 4)
    return kv.to(device=weight.device, dtype=weight.dtype).contiguous()


def load_prefix_adapter(lm: LoadedModel, folder: Path) -> torch.Tensor:
    """The prefix adapter in `folder` for `lm`: refused in one line if it is not one, or was made for another base
    model (by the fingerprint loracle's manifest records, else the model its config names) or shape."""
    check_base_model(lm, folder, read_adapter_config(folder, PREFIX_TUNING))
    return read_prefix_adapter(folder, lm.model)
