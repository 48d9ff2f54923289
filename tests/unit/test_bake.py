"""`loracle bake` on the tiny in-memory model: a bake runs end to end, writes a PEFT folder PEFT loads, moves the
unprompted model toward the prompted one, stacks with a knowledge adapter, and refuses bad input in one line."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from loracle.bake.baker import adapted_paths, bake
from loracle.bake.config import BakeConfig, bake_config
from loracle.bake.measure import kl_per_token, teacher_targets
from loracle.bake.prompts import held_out_prompts, training_prompts
from loracle.errors import LoracleError
from loracle.learners.lora import fresh_factors, hooked, linear_paths, write_peft
from loracle.model import apply_adapters
from loracle.model.loader import LoadedModel

INSTRUCTION = "Answer in French."
#: a bake small enough for the tiny model: both layers' attention, a few prompts and short replies
TINY = {
    "modules": ["q_proj", "v_proj"],
    "layer_fraction": 1.0,
    "written_prompts": 2,
    "general_prompts": 6,
    "reply_tokens": 6,
    "steps": 4,
    "batch_size": 4,
}


def fresh(lm: LoadedModel) -> LoadedModel:
    """Another copy of the base model (PEFT wraps the model it loads into, and merging changes it)."""
    return LoadedModel(copy.deepcopy(lm.model), lm.tokenizer, lm.name, lm.source, lm.fingerprint)


def logits(lm: LoadedModel, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return lm.model(torch.tensor([ids])).logits


def test_bake_writes_a_peft_folder_that_loads_and_says_what_it_bakes(
    tiny_lm: LoadedModel, tmp_path: Path, one_thread: None
) -> None:
    out = tmp_path / "french"
    report = bake(tiny_lm, bake_config(INSTRUCTION, TINY), out)
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "manifest.json",
    ]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["instruction"] == INSTRUCTION and manifest["learner"] == "bake"
    assert manifest["base_fingerprint"] == tiny_lm.fingerprint and manifest["config"]["steps"] == 4
    assert len(report.losses) == 4 and report.size_bytes == (out / "adapter_model.safetensors").stat().st_size
    config = json.loads((out / "adapter_config.json").read_text(encoding="utf-8"))
    assert sorted(config["target_modules"]) == sorted(adapted_paths(tiny_lm, BakeConfig(instruction="x", **TINY)))

    ids = tiny_lm.tokenizer.encode("Who founded it?")
    loaded = apply_adapters(fresh(tiny_lm), [out])  # a plain PEFT load
    tensors = load_file(str(out / "adapter_model.safetensors"))
    factors = {
        key.removeprefix("base_model.model.").removesuffix(".lora_A.weight"): (
            tensors[key],
            tensors[key.replace("lora_A", "lora_B")],
        )
        for key in tensors
        if key.endswith("lora_A.weight")
    }
    assert any(float(b.abs().max()) > 0 for _, b in factors.values())  # training moved it off its zero start
    base = fresh(tiny_lm)
    with hooked(base.model, factors, config["lora_alpha"] / config["r"]):
        expected = logits(base, ids)
    assert torch.allclose(logits(loaded, ids), expected, atol=1e-5)
    assert not torch.allclose(logits(fresh(tiny_lm), ids), expected, atol=1e-5)


def test_bake_moves_the_bare_model_toward_the_prompted_one(
    tiny_lm: LoadedModel, tmp_path: Path, one_thread: None
) -> None:
    with torch.no_grad():  # a fresh tiny model barely reads its context: larger weights make the prompt matter
        for name, param in tiny_lm.model.named_parameters():
            if param.dim() == 2 and "embed" not in name:
                param.mul_(3)
    options = {**TINY, "steps": 40, "lr": 1e-2, "written_prompts": 0, "teacher_top_k": 256, "candidate_top_k": 0}
    config = bake_config(INSTRUCTION, options)
    prompts = training_prompts(tiny_lm, config)
    targets = teacher_targets(tiny_lm, INSTRUCTION, prompts, config.reply_tokens)
    before = kl_per_token(tiny_lm, targets)
    out = tmp_path / "baked"
    bake(tiny_lm, config, out)
    after = kl_per_token(apply_adapters(fresh(tiny_lm), [out], merge=True), targets)
    assert before > 1e-3
    assert after < 0.5 * before


def test_a_baked_adapter_stacks_with_a_knowledge_adapter(
    tiny_lm: LoadedModel, tmp_path: Path, one_thread: None
) -> None:
    baked = tmp_path / "baked"
    bake(tiny_lm, bake_config(INSTRUCTION, TINY), baked)
    knowledge = tmp_path / "knowledge"  # a document's adapter is on the MLP down projections (ttt, hypernet)
    factors = fresh_factors(tiny_lm.model, linear_paths(tiny_lm.model, ["down_proj"], [1]), 4, seed=3)
    factors = {
        path: (a, torch.randn(b.shape, generator=torch.Generator().manual_seed(4))) for path, (a, b) in factors.items()
    }
    write_peft(
        knowledge, factors, scale=1.0, base_model=tiny_lm.name, manifest={"base_fingerprint": tiny_lm.fingerprint}
    )

    ids = tiny_lm.tokenizer.encode("Who founded it?")
    base = logits(fresh(tiny_lm), ids)
    only_baked = logits(apply_adapters(fresh(tiny_lm), [baked], merge=True), ids)
    only_knowledge = logits(apply_adapters(fresh(tiny_lm), [knowledge], merge=True), ids)
    both = logits(apply_adapters(fresh(tiny_lm), [baked, knowledge], merge=True), ids)
    both_unmerged = logits(apply_adapters(fresh(tiny_lm), [knowledge, baked]), ids)
    assert torch.allclose(both, both_unmerged, atol=1e-5)  # either order, merged or not: the same model
    for alone in (base, only_baked, only_knowledge):
        assert not torch.allclose(both, alone, atol=1e-4)  # each adapter does its part


def test_training_prompts_never_include_the_held_out_ones(
    tiny_lm: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    held_out = held_out_prompts()
    assert len(held_out) == 50
    written = ["A question of its own?", held_out[3]]  # as if the model had written a held-out prompt
    monkeypatch.setattr("loracle.bake.prompts.written_prompts", lambda _lm, _instruction, _count: written)
    prompts = training_prompts(tiny_lm, bake_config(INSTRUCTION, {"general_prompts": 69}))
    assert prompts[0] == written[0] and len(prompts) == 70
    assert not set(prompts) & set(held_out)


@pytest.mark.parametrize(
    ("instruction", "options", "says"),
    [
        ("   ", {}, "instruction: Value error, the instruction is blank"),
        (INSTRUCTION, {"rank": 0}, "rank: Input should be greater than or equal to 1"),
        (INSTRUCTION, {"general_prompts": 70}, "general_prompts: Input should be less than or equal to 69"),
        (INSTRUCTION, {"stpes": 3}, "stpes: Extra inputs are not permitted"),
    ],
)
def test_bad_options_are_one_line(instruction: str, options: dict, says: str) -> None:
    with pytest.raises(LoracleError) as caught:
        bake_config(instruction, options)
    assert str(caught.value).startswith(f"bake: {says}") and "\n" not in str(caught.value)


def test_modules_the_model_lacks_are_named_before_any_work(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    config = bake_config(INSTRUCTION, {**TINY, "modules": ["c_attn"]})
    with pytest.raises(LoracleError, match=r"^tiny: no linear layers named c_attn in its decoder layers"):
        bake(tiny_lm, config, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_an_out_folder_that_is_no_adapter_is_refused_and_kept(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.md").write_text("keep me", encoding="utf-8")
    with pytest.raises(LoracleError, match=r"notes: exists and is not an adapter folder"):
        bake(tiny_lm, bake_config(INSTRUCTION, TINY), notes)
    assert (notes / "todo.md").read_text(encoding="utf-8") == "keep me"

    again = tmp_path / "again"  # an adapter folder (or an empty one) is baked into, replacing what was there
    bake(tiny_lm, bake_config(INSTRUCTION, TINY), again)
    bake(tiny_lm, bake_config("Answer in one sentence.", TINY), again)
    assert json.loads((again / "manifest.json").read_text(encoding="utf-8"))["instruction"] == "Answer in one sentence."


def test_linear_paths_and_fresh_factors(tiny_lm: LoadedModel) -> None:
    paths = linear_paths(tiny_lm.model, ["v_proj", "down_proj"], [1])
    assert paths == ["model.layers.1.self_attn.v_proj", "model.layers.1.mlp.down_proj"]
    factors = fresh_factors(tiny_lm.model, paths, 3, seed=0)
    a, b = factors["model.layers.1.self_attn.v_proj"]
    assert a.shape == (3, 32) and b.shape == (16, 3) and a.requires_grad and not b.any()
    assert torch.equal(a, fresh_factors(tiny_lm.model, paths, 3, seed=0)["model.layers.1.self_attn.v_proj"][0])
