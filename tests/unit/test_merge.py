"""Merging adapters: linear is the weighted sum of deltas, cat preserves the sum, ties keeps the shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from loracle.adapters.merge import merge_adapters
from loracle.errors import AdapterError
from loracle.model import apply_adapters
from loracle.model.loader import LoadedModel
from tests.unit.test_adapter_store import TINY_MODULES, make_adapter


def deltas(folder: Path) -> dict[str, torch.Tensor]:
    """Each adapted module's weight delta, scaling (alpha / r) included."""
    config = json.loads((folder / "adapter_config.json").read_text())
    scale = config["lora_alpha"] / config["r"]
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    return {
        key.replace(".lora_A.weight", ""): scale * tensors[key.replace("lora_A", "lora_B")] @ tensors[key]
        for key in tensors
        if ".lora_A." in key
    }


@pytest.fixture
def two_adapters(tmp_path: Path, tiny_lm: LoadedModel) -> list[Path]:
    make_adapter(tmp_path / "a", tiny_lm, seed=1, r=2, alpha=4.0)
    make_adapter(tmp_path / "b", tiny_lm, seed=2, r=3, alpha=3.0)
    return [tmp_path / "a", tmp_path / "b"]


@pytest.mark.parametrize("method", ["linear", "cat"])
def test_merge_equals_the_weighted_sum_of_deltas(
    method: str, two_adapters: list[Path], tmp_path: Path, tiny_lm: LoadedModel
) -> None:
    weights = [1.0, 0.5]
    manifest = merge_adapters(tiny_lm, two_adapters, tmp_path / "merged", weights=weights, method=method)
    expected = {
        key: weights[0] * da + weights[1] * deltas(two_adapters[1])[key] for key, da in deltas(two_adapters[0]).items()
    }
    got = deltas(tmp_path / "merged")
    assert got.keys() == expected.keys() and len(got) == 2 * len(TINY_MODULES)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-5, rtol=1e-4)
    assert manifest.source == "merge" and manifest.inputs == ["a", "b"]
    assert manifest.base_fingerprint == tiny_lm.fingerprint
    assert type(tiny_lm.model).__name__ == "LlamaForCausalLM"  # PEFT wrapper removed again
    apply_adapters(tiny_lm, [tmp_path / "merged"])


def test_ties_merge_prunes_but_keeps_the_layout(two_adapters: list[Path], tmp_path: Path, tiny_lm: LoadedModel) -> None:
    merge_adapters(tiny_lm, two_adapters, tmp_path / "ties", method="ties", density=0.3)
    got = deltas(tmp_path / "ties")
    expected = {key: d + deltas(two_adapters[1])[key] for key, d in deltas(two_adapters[0]).items()}
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key].shape == expected[key].shape
        assert not torch.allclose(got[key], expected[key], atol=1e-4)  # pruning changed it
        assert torch.linalg.matrix_norm(got[key]) > 0


def test_merge_refuses_bad_requests(two_adapters: list[Path], tmp_path: Path, tiny_lm: LoadedModel) -> None:
    with pytest.raises(AdapterError, match="unknown merge method"):
        merge_adapters(tiny_lm, two_adapters, tmp_path / "m", method="average")
    with pytest.raises(AdapterError, match="at least two"):
        merge_adapters(tiny_lm, two_adapters[:1], tmp_path / "m")
    with pytest.raises(AdapterError, match="3 weights"):
        merge_adapters(tiny_lm, two_adapters, tmp_path / "m", weights=[1, 2, 3])
    assert not (tmp_path / "m").exists()
