"""Write LoRA weights (or a prefix-tuning cache) as a plain PEFT adapter folder (+ loracle's manifest.json),
atomically.

`PeftModel.from_pretrained(base, folder)` loads what this writes. LoRA tensor names follow PEFT's saved
form: base_model.model.<module path>.lora_A.weight ([r, in]) and .lora_B.weight ([out, r]); a prefix adapter
is one tensor, prompt_embeddings ([virtual tokens, layers * 2 * key/value width]).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from loracle.atomic import atomic_folder
from loracle.model.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, MANIFEST


def peft_key(module_path: str, which: str) -> str:
    """The saved name of a LoRA matrix for `module_path` (e.g. model.layers.3.mlp.down_proj), which = A or B."""
    return f"base_model.model.{module_path}.lora_{which}.weight"


def lora_config_dict(r: int, alpha: float, target_modules: Sequence[str], base_model: str) -> dict[str, Any]:
    from peft import LoraConfig

    config = LoraConfig(
        r=r, lora_alpha=alpha, target_modules=sorted(set(target_modules)), lora_dropout=0.0, bias="none"
    )
    config.base_model_name_or_path = base_model
    config.task_type = "CAUSAL_LM"
    data = config.to_dict()
    return {k: (sorted(v) if isinstance(v, set) else v) for k, v in data.items()}


def write_lora_adapter(
    folder: Path,
    tensors: dict[str, torch.Tensor],
    *,
    r: int,
    alpha: float,
    target_modules: Sequence[str],
    base_model: str,
    manifest: dict[str, Any],
    dtype: torch.dtype = torch.float32,
) -> int:
    """Write the LoRA adapter folder in one atomic step, the weights in `dtype`; returns the bytes of its weights
    file."""
    config = lora_config_dict(r, alpha, target_modules, base_model)
    return write_adapter_folder(folder, tensors, config, manifest, dtype)


def prefix_config_dict(
    virtual_tokens: int, layers: int, kv_heads: int, head_dim: int, base_model: str
) -> dict[str, Any]:
    """A PEFT prefix-tuning config whose weights are the keys and values themselves (no projection), sized by
    the key/value heads, as PEFT sizes a prefix for grouped-query attention."""
    from peft import PrefixTuningConfig

    config = PrefixTuningConfig(
        task_type="CAUSAL_LM",
        num_virtual_tokens=virtual_tokens,
        num_layers=layers,
        token_dim=kv_heads * head_dim,
        num_attention_heads=kv_heads,
        encoder_hidden_size=kv_heads * head_dim,
        prefix_projection=False,
        inference_mode=True,
    )
    config.base_model_name_or_path = base_model
    return config.to_dict()


def write_adapter_folder(
    folder: Path,
    tensors: dict[str, torch.Tensor],
    config: dict[str, Any],
    manifest: dict[str, Any],
    dtype: torch.dtype = torch.float32,
) -> int:
    """Write a PEFT adapter folder (weights, config, loracle's manifest) in one atomic step, the weights in
    `dtype`; returns the bytes of its weights file."""
    with atomic_folder(folder) as staging:
        save_file(
            {k: v.detach().to(dtype).contiguous().cpu() for k, v in tensors.items()},
            str(staging / ADAPTER_WEIGHTS),
        )
        (staging / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, default=str), encoding="utf-8")
        size = (staging / ADAPTER_WEIGHTS).stat().st_size
        record = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "size_bytes": size, **manifest}
        (staging / MANIFEST).write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
    return size
