import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model

from loracle.errors import AdapterError
from loracle.model import apply_adapters
from loracle.model.loader import LoadedModel
from tests.conftest import build_tiny_model


def make_adapter(lm: LoadedModel, folder: Path, seed: int, targets=("down_proj",), hidden: int | None = None) -> Path:
    """A real PEFT adapter with non-zero B so that it changes the output."""
    base = build_tiny_model(len(lm.tokenizer)) if hidden is None else _wide_model(len(lm.tokenizer), hidden)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets)))
    torch.manual_seed(seed)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    peft_model.save_pretrained(folder)
    return folder


def _wide_model(vocab: int, hidden: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return LlamaForCausalLM(cfg)


def logits(lm: LoadedModel) -> torch.Tensor:
    with torch.no_grad():
        return lm.model(torch.tensor([[1, 2, 3, 4]])).logits


def test_one_adapter_changes_output_and_merge_matches(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    before = logits(tiny_lm)
    folder = make_adapter(tiny_lm, tmp_path / "a", seed=1)
    unmerged = logits(apply_adapters(tiny_lm, [folder]))
    assert not torch.allclose(before, unmerged)
    fresh = LoadedModel(build_tiny_model(len(tiny_lm.tokenizer)), tiny_lm.tokenizer, "t", "m", tiny_lm.fingerprint)
    merged = logits(apply_adapters(fresh, [folder], merge=True))
    assert torch.allclose(unmerged, merged, atol=1e-5)


def test_weights_scale_and_stack(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    a = make_adapter(tiny_lm, tmp_path / "a", seed=1)
    b = make_adapter(tiny_lm, tmp_path / "b", seed=2, targets=("q_proj", "v_proj"))
    base = logits(tiny_lm)

    def fresh() -> LoadedModel:
        return LoadedModel(build_tiny_model(len(tiny_lm.tokenizer)), tiny_lm.tokenizer, "t", "m", tiny_lm.fingerprint)

    zero = logits(apply_adapters(fresh(), [a, b], [0.0, 0.0]))
    assert torch.allclose(base, zero, atol=1e-6)
    only_a = logits(apply_adapters(fresh(), [a]))
    a_and_b = logits(apply_adapters(fresh(), [a, b], [1.0, 1.0]))
    a_without_b = logits(apply_adapters(fresh(), [a, b], [1.0, 0.0]))
    assert torch.allclose(only_a, a_without_b, atol=1e-6)
    assert not torch.allclose(only_a, a_and_b)


def test_refuses_other_shapes(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    folder = make_adapter(tiny_lm, tmp_path / "wide", seed=1, hidden=64)
    with pytest.raises(AdapterError, match="base model has"):
        apply_adapters(tiny_lm, [folder])


def test_refuses_other_base_fingerprint(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    folder = make_adapter(tiny_lm, tmp_path / "a", seed=1)
    (folder / "manifest.json").write_text(json.dumps({"base_fingerprint": "0000000000000000"}))
    with pytest.raises(AdapterError, match="made for another base model"):
        apply_adapters(tiny_lm, [folder])


@pytest.mark.parametrize("breakage", ["missing", "no-config", "bad-json", "corrupt-weights"])
def test_broken_adapter_folders(tiny_lm: LoadedModel, tmp_path: Path, breakage: str) -> None:
    folder = make_adapter(tiny_lm, tmp_path / "a", seed=1)
    if breakage == "missing":
        folder = tmp_path / "nope"
    elif breakage == "no-config":
        (folder / "adapter_config.json").unlink()
    elif breakage == "bad-json":
        (folder / "adapter_config.json").write_text("{not json")
    else:
        (folder / "adapter_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(AdapterError) as info:
        apply_adapters(tiny_lm, [folder])
    assert "\n" not in str(info.value)


def test_weight_count_must_match(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    folder = make_adapter(tiny_lm, tmp_path / "a", seed=1)
    with pytest.raises(AdapterError, match="2 adapter weights given for 1"):
        apply_adapters(tiny_lm, [folder], [1.0, 2.0])
