"""GGUF LoRA export: read the file back with gguf.GGUFReader and check what llama.cpp looks for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGUFReader

from loracle.adapters.gguf_export import export_gguf, gguf_tensor_name, llama_rotary_permute
from loracle.adapters.peft_format import peft_key
from loracle.errors import AdapterError
from loracle.model.loader import LoadedModel
from tests.unit.test_adapter_store import TINY_MODULES, make_adapter


def field_value(reader: GGUFReader, key: str) -> object:
    return reader.get_field(key).contents()


def test_export_writes_a_llama_cpp_lora(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    tensors = make_adapter(tmp_path / "notes", tiny_lm, seed=3, r=2, alpha=8.0)
    out = export_gguf(tmp_path / "notes", tmp_path / "out" / "notes.gguf", n_head=4, n_kv_head=2)
    reader = GGUFReader(out)
    assert field_value(reader, "general.architecture") == "llama"
    assert field_value(reader, "general.type") == "adapter"
    assert field_value(reader, "adapter.type") == "lora"
    assert field_value(reader, "adapter.lora.alpha") == pytest.approx(8.0)
    read = {t.name: np.array(t.data) for t in reader.tensors}
    assert len(read) == 2 * 2 * len(TINY_MODULES)
    for layer in range(2):
        down_a = tensors[peft_key(f"model.layers.{layer}.mlp.down_proj", "A")]
        down_b = tensors[peft_key(f"model.layers.{layer}.mlp.down_proj", "B")]
        np.testing.assert_allclose(read[f"blk.{layer}.ffn_down.weight.lora_a"], down_a.numpy())
        np.testing.assert_allclose(read[f"blk.{layer}.ffn_down.weight.lora_b"], down_b.numpy())
        q_b = tensors[peft_key(f"model.layers.{layer}.self_attn.q_proj", "B")]
        k_b = tensors[peft_key(f"model.layers.{layer}.self_attn.k_proj", "B")]
        np.testing.assert_allclose(read[f"blk.{layer}.attn_q.weight.lora_b"], llama_rotary_permute(q_b, 4).numpy())
        np.testing.assert_allclose(read[f"blk.{layer}.attn_k.weight.lora_b"], llama_rotary_permute(k_b, 2).numpy())
    # GGUF records dimensions innermost first: lora_a of ffn_down is [in=64, r=2], lora_b [r=2, out=32]
    shapes = {t.name: [int(d) for d in t.shape] for t in reader.tensors}
    assert shapes["blk.0.ffn_down.weight.lora_a"] == [64, 2]
    assert shapes["blk.0.ffn_down.weight.lora_b"] == [2, 32]
    assert not list(out.parent.glob(".*"))


def test_rotary_permute_reorders_rows_within_each_head() -> None:
    rows = torch.arange(8).reshape(8, 1).float()
    assert llama_rotary_permute(rows, 2).flatten().tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_unsupported_modules_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match=r"no llama\.cpp tensor"):
        gguf_tensor_name("model.layers.0.mlp.fc1")
    with pytest.raises(AdapterError, match="no such adapter folder"):
        export_gguf(tmp_path / "missing", tmp_path / "x.gguf", n_head=4, n_kv_head=2)
