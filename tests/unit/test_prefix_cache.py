"""Prefix adapters at answer time: keys moved along positions, prefixes joined, PEFT folders read back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import DynamicCache

from loracle.adapters.peft_format import prefix_config_dict, write_adapter_folder
from loracle.errors import AdapterError
from loracle.model.prefix import (
    PEFT_PREFIX_KEY,
    is_prefix_adapter,
    join_prefixes,
    peft_prefix_weights,
    read_prefix_adapter,
    shift_keys,
)


def cached_kv(model: torch.nn.Module, ids: list[int], first_position: int) -> torch.Tensor:
    """The cache of `ids` read at positions first_position, first_position + 1, ...: [layers, 2, heads, n, dim]."""
    cache = DynamicCache(config=model.config)
    positions = torch.arange(first_position, first_position + len(ids))[None]
    with torch.no_grad():
        model.model(input_ids=torch.tensor([ids]), position_ids=positions, cache=cache, use_cache=True)
    return torch.stack([torch.stack([layer.keys[0], layer.values[0]]) for layer in cache.layers])


def test_shifted_keys_are_the_keys_read_that_much_later(tiny_lm):
    ids = [5, 9, 14, 3]
    early, late = cached_kv(tiny_lm.model, ids, 0), cached_kv(tiny_lm.model, ids, 7)
    assert not torch.allclose(early[:, 0], late[:, 0], atol=1e-4)  # keys carry their positions
    assert torch.allclose(shift_keys(tiny_lm.model, early, 7), late, atol=1e-5)
    assert torch.equal(shift_keys(tiny_lm.model, early, 0), early)


def test_joined_prefixes_sit_one_after_another(tiny_lm):
    first, second = cached_kv(tiny_lm.model, [5, 9], 0), cached_kv(tiny_lm.model, [14, 3, 8], 0)
    joined = join_prefixes(tiny_lm.model, [first, second])
    assert joined is not None and joined.shape[3] == 5
    assert torch.equal(joined[:, :, :, :2], first)
    assert torch.allclose(joined[:, :, :, 2:], cached_kv(tiny_lm.model, [14, 3, 8], 2), atol=1e-5)
    assert join_prefixes(tiny_lm.model, []) is None


def write_prefix(folder: Path, kv: torch.Tensor) -> None:
    layers, _, heads, m, dim = kv.shape
    config = prefix_config_dict(m, layers, heads, dim, "tiny")
    write_adapter_folder(folder, {PEFT_PREFIX_KEY: peft_prefix_weights(kv)}, config, {})


def test_a_prefix_folder_reads_back_as_written_and_a_misfit_is_refused(tiny_lm, tmp_path: Path):
    kv = cached_kv(tiny_lm.model, [5, 9, 14], 0)
    write_prefix(tmp_path / "prefix", kv)
    assert is_prefix_adapter(tmp_path / "prefix") and not is_prefix_adapter(tmp_path)
    assert torch.equal(read_prefix_adapter(tmp_path / "prefix", tiny_lm.model), kv)
    write_prefix(tmp_path / "narrow", kv[:, :, :, :, :-2])
    with pytest.raises(AdapterError, match="narrow: a prefix of width"):
        read_prefix_adapter(tmp_path / "narrow", tiny_lm.model)
