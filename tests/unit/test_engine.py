"""The OpenVINO engine on the tiny model: same logits and greedy tokens as torch, adapters applied, fallbacks.

The tiny model is traced once per session (into a session cache folder); each test works on its own copy.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from loracle.errors import LoracleError
from loracle.model import GenerationConfig, apply_adapters, stream_ids
from loracle.model import engine as engine_module
from loracle.model.cache import CACHE_ENV
from loracle.model.loader import LoadedModel

pytest.importorskip("openvino", reason="the openvino package (the engine and dev extras) is not installed")

from loracle.model.ov_adapters import slot_values
from loracle.model.ov_engine import EngineUnavailable, engine_for
from loracle.model.ov_graph import LORA_PARTS, lora_state_name, slot_parts
from loracle.model.ov_weights import best_grid, fit_grid

PROMPTS = ["The Kestrel Valley Observatory", "Question: Who founded it?", "Paris is the capital", "安全 日本語"]


@pytest.fixture(scope="module", autouse=True)
def engine_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache folder for the module's traces, so the tiny model is traced once."""
    folder = tmp_path_factory.mktemp("engine-cache")
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous


@pytest.fixture(autouse=True)
def engine_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no engine chosen and no warning given, and leaves the process as it found it."""
    monkeypatch.setattr(engine_module, "_selected", None)
    monkeypatch.setattr(engine_module, "_warned", set())


@pytest.fixture
def openvino_selected() -> None:
    engine_module.select_engine("openvino")


@pytest.fixture
def grid_lm(tiny_lm: LoadedModel) -> LoadedModel:
    """The tiny model with its weights on a 4-bit grid per 32 inputs, as a model dequantised from a Q4_1 GGUF (the
    embedded model) has them: the engine stores them exactly, so only arithmetic order differs from torch."""
    with torch.no_grad():
        for module in tiny_lm.model.modules():
            if isinstance(module, torch.nn.Linear):
                blocks = module.weight.view(module.out_features, -1, 32)
                low, high = blocks.amin(-1, keepdim=True), blocks.amax(-1, keepdim=True)
                step = (high - low) / 15
                blocks.copy_(torch.round((blocks - low) / step) * step + low)
    return tiny_lm


def _copy(lm: LoadedModel) -> LoadedModel:
    return LoadedModel(copy.deepcopy(lm.model), lm.tokenizer, lm.name, lm.source, lm.fingerprint)


def _engine_logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    step = engine_for(model).step_function(model, 1)
    return step(ids)


def _torch_logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1]


def _greedy(lm: LoadedModel, prompt: str, engine: str, tokens: int = 12) -> tuple[list[int], str]:
    engine_module.select_engine(engine)
    stream = stream_ids(lm, lm.tokenizer.encode(prompt), GenerationConfig(max_new_tokens=tokens, logprobs=0))
    stream.text()
    return [t.token for t in stream.stats.token_logprobs], stream.stats.decoder


def _adapter(lm: LoadedModel, folder: Path, seed: int, targets: list[str] | None = None) -> Path:
    """A PEFT LoRA adapter for the tiny model with non-zero B, so that it changes the output."""
    from peft import LoraConfig, get_peft_model

    targets = targets or ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(copy.deepcopy(lm.model), LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    peft_model.peft_config["default"].base_model_name_or_path = lm.name
    peft_model.save_pretrained(folder)
    return folder


def test_logits_match_torch_without_adapters(grid_lm: LoadedModel, one_thread: None) -> None:
    for prompt in PROMPTS:
        ids = grid_lm.tokenizer.encode(prompt)
        ours, theirs = _engine_logits(grid_lm.model, ids), _torch_logits(grid_lm.model, ids)
        assert torch.allclose(ours, theirs, atol=2e-2 * float(theirs.abs().max())), prompt


def test_greedy_tokens_match_torch_with_and_without_an_adapter(
    grid_lm: LoadedModel, tmp_path: Path, one_thread: None
) -> None:
    adapted = apply_adapters(_copy(grid_lm), [_adapter(grid_lm, tmp_path / "a", seed=1)])
    for lm in (grid_lm, adapted):
        for prompt in PROMPTS:
            ours, decoder = _greedy(lm, prompt, "openvino")
            assert decoder == "openvino"
            assert ours == _greedy(lm, prompt, "torch")[0], prompt


def test_an_adapter_changes_the_engine_output_as_it_changes_torch(grid_lm: LoadedModel, tmp_path: Path) -> None:
    base_logits = _engine_logits(grid_lm.model, grid_lm.tokenizer.encode(PROMPTS[0]))
    adapted = apply_adapters(_copy(grid_lm), [_adapter(grid_lm, tmp_path / "a", seed=1)])
    ids = grid_lm.tokenizer.encode(PROMPTS[0])
    ours, theirs = _engine_logits(adapted.model, ids), _torch_logits(adapted.model, ids)
    assert not torch.allclose(ours, base_logits, atol=1e-2)  # the adapter is really applied ...
    assert torch.allclose(ours, theirs, atol=2e-2 * float(theirs.abs().max()))  # ... as torch applies it


def test_stacked_adapters_with_weights_match_torch(grid_lm: LoadedModel, tmp_path: Path) -> None:
    folders = [_adapter(grid_lm, tmp_path / "a", seed=1), _adapter(grid_lm, tmp_path / "b", seed=2, targets=["v_proj"])]
    adapted = apply_adapters(_copy(grid_lm), folders, [0.5, 2.0])
    ids = grid_lm.tokenizer.encode(PROMPTS[1])
    ours, theirs = _engine_logits(adapted.model, ids), _torch_logits(adapted.model, ids)
    assert torch.allclose(ours, theirs, atol=2e-2 * float(theirs.abs().max()))


def test_switching_adapters_between_requests_follows_the_active_one(grid_lm: LoadedModel, tmp_path: Path) -> None:
    adapted = apply_adapters(_copy(grid_lm), [_adapter(grid_lm, tmp_path / "a", seed=1)])
    adapted.model.load_adapter(str(_adapter(grid_lm, tmp_path / "b", seed=2)), adapter_name="other")
    ids = grid_lm.tokenizer.encode(PROMPTS[2])
    for name in ("other", "a0", "other"):
        adapted.model.set_adapter(name)
        ours, theirs = _engine_logits(adapted.model, ids), _torch_logits(adapted.model, ids)
        assert torch.allclose(ours, theirs, atol=2e-2 * float(theirs.abs().max())), name


def _lora_states(compiled) -> set[str]:
    return {s.name for s in compiled.create_infer_request().query_state() if s.name.startswith("lora.")}


def test_only_the_slots_an_adapter_uses_are_compiled(grid_lm: LoadedModel, tmp_path: Path, one_thread: None) -> None:
    adapted = apply_adapters(_copy(grid_lm), [_adapter(grid_lm, tmp_path / "d", seed=5, targets=["down_proj"])])
    ids = grid_lm.tokenizer.encode(PROMPTS[3])
    ours, theirs = _engine_logits(adapted.model, ids), _torch_logits(adapted.model, ids)
    assert torch.allclose(ours, theirs, atol=2e-2 * float(theirs.abs().max()))
    engine = engine_for(adapted.model)
    down = frozenset(part.slot for path, part in engine.parts.items() if path.endswith("down_proj"))
    assert list(engine._compiled) == [(1, down)]  # the step above ran the model with the down slots only
    assert _lora_states(engine.compiled(1, down)) == {lora_state_name(s, p) for s in down for p in LORA_PARTS}
    assert _lora_states(engine.compiled(1, frozenset())) == set()  # no adapter: no LoRA nodes at all


def test_projections_sharing_a_slot_get_block_diagonal_factors(grid_lm: LoadedModel) -> None:
    parts = slot_parts(grid_lm.model)
    q, v = "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"
    width = parts[v].stop - parts[v].start
    factors = {
        q: (torch.ones(32, 2), torch.full((2, parts[q].stop), 2.0)),
        v: (torch.ones(32, 3), torch.full((3, width), 3.0)),
    }
    ((slot, (a, b)),) = slot_values(factors, parts).items()
    assert slot == parts[q].slot == parts[v].slot and a.shape == (32, 5)
    assert (b[:2, : parts[q].stop] == 2).all() and (b[2:, parts[v].start :] == 3).all()
    b[:2, : parts[q].stop] = 0
    b[2:, parts[v].start :] = 0
    assert not b.any()  # k's columns, and each projection's rows outside its own columns, are zero


def test_switching_back_reuses_the_request_that_holds_the_adapter(grid_lm: LoadedModel) -> None:
    engine = engine_for(grid_lm.model)
    parts = slot_parts(grid_lm.model)
    path = "model.layers.1.mlp.down_proj"
    first, second = ({path: (torch.randn(64, 2), torch.randn(2, 32))} for _ in range(2))
    values = {name: slot_values(factors, parts) for name, factors in (("first", first), ("second", second))}
    key = (1, frozenset([parts[path].slot]))
    used = {}
    for name in ("first", "second", "first", "second"):
        pooled = engine._acquire(key, values[name])
        assert pooled.holds(values[name])
        assert used.setdefault(name, pooled) is pooled  # the same request again: no state written on switching back
        engine._release(key, pooled)
    assert used["first"] is not used["second"]


def test_merge_keeps_adapters_unmerged_for_the_engine(
    grid_lm: LoadedModel, tmp_path: Path, openvino_selected: None
) -> None:
    adapted = apply_adapters(_copy(grid_lm), [_adapter(grid_lm, tmp_path / "a", seed=1)], merge=True)
    assert hasattr(adapted.model, "get_base_model")  # still a PEFT model: the engine applies it at run time
    assert _greedy(adapted, PROMPTS[0], "openvino")[1] == "openvino"


def test_forward_hooks_fall_back_to_torch_with_one_warning(
    grid_lm: LoadedModel, openvino_selected: None, caplog: pytest.LogCaptureFixture
) -> None:
    lm = _copy(grid_lm)
    lm.model.model.layers[0].mlp.register_forward_hook(lambda module, args, out: out * 1.5)
    with caplog.at_level(logging.WARNING, logger="loracle.model.engine"):
        first, decoder = _greedy(lm, PROMPTS[0], "openvino")
        _greedy(lm, PROMPTS[1], "openvino")
    assert decoder != "openvino"
    assert first == _greedy(lm, PROMPTS[0], "torch")[0]  # torch ran the hook
    warnings = [r.getMessage() for r in caplog.records if "forward hooks" in r.getMessage()]
    assert len(warnings) == 1 and "model.layers.0.mlp" in warnings[0] and "\n" not in warnings[0]


def test_weights_changed_in_place_fall_back_to_torch(grid_lm: LoadedModel, openvino_selected: None) -> None:
    lm = _copy(grid_lm)
    assert _greedy(lm, PROMPTS[0], "openvino")[1] == "openvino"
    with torch.no_grad():
        lm.model.model.layers[1].mlp.down_proj.weight.mul_(3.0)
    assert _greedy(lm, PROMPTS[0], "openvino")[1] != "openvino"


def test_an_adapter_on_the_output_head_is_refused_by_the_engine(grid_lm: LoadedModel, tmp_path: Path) -> None:
    adapted = apply_adapters(_copy(grid_lm), [_adapter(grid_lm, tmp_path / "h", seed=3, targets=["lm_head"])])
    with pytest.raises(EngineUnavailable, match="lm_head"):
        engine_for(adapted.model)


def test_the_trace_is_cached_on_disk(grid_lm: LoadedModel, engine_cache: Path) -> None:
    first = engine_for(grid_lm.model).folder
    stamp = (first / "model.xml").stat().st_mtime_ns
    again = engine_for(_copy(grid_lm).model).folder  # another module with the same weights: same cache entry
    assert again == first and (again / "model.xml").stat().st_mtime_ns == stamp


def test_unknown_or_missing_engine_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(LoracleError, match="unknown engine 'fast'"):
        engine_module.select_engine("fast")
    monkeypatch.setattr(engine_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LoracleError, match="needs the openvino package"):
        engine_module.check_engine("openvino")


def test_weights_on_a_4_bit_grid_are_stored_exactly() -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 16, size=(8, 4, 32))
    codes[..., 0], codes[..., 1] = 0, 15  # as GGUF's Q4_1 quantiser leaves each block: its min and max on the grid
    weight = (codes * rng.uniform(0.01, 0.1, (8, 4, 1)) + rng.uniform(-1, 0, (8, 4, 1))).reshape(8, 128)
    grid = best_grid(weight.astype(np.float32))
    assert grid.kind == "u4" and grid.error < 1e-3


def test_weights_on_an_8_bit_symmetric_grid_are_stored_exactly() -> None:
    rng = np.random.default_rng(1)
    codes = rng.integers(-127, 128, size=(4, 2, 32))
    codes[..., 0] = 127
    weight = (codes * rng.uniform(0.001, 0.01, (4, 2, 1))).reshape(4, 64).astype(np.float32)
    grid = best_grid(weight)
    assert grid.kind == "i8" and grid.error < 1e-3


def test_other_weights_go_to_8_bits_within_half_a_step() -> None:
    weight = np.random.default_rng(2).normal(size=(4, 64)).astype(np.float32)
    grid = best_grid(weight)
    assert grid.kind == "u8" and grid.error <= 0.5 + 1e-6
    assert fit_grid(weight, "u4").error > 1e-3


def _factors(lm: LoadedModel, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A learner-style LoRA (A [r, in], B [out, r]) on two projections."""
    generator = torch.Generator().manual_seed(seed)
    factors = {}
    for path in ("model.layers.0.self_attn.v_proj", "model.layers.1.mlp.down_proj"):
        linear = lm.model.get_submodule(path)
        factors[path] = (
            torch.randn(2, linear.in_features, generator=generator) * 0.3,
            torch.randn(linear.out_features, 2, generator=generator) * 0.3,
        )
    return factors


@pytest.mark.parametrize("how", ["hooked", "merged"])
def test_a_learners_lora_reaches_the_engine(grid_lm: LoadedModel, openvino_selected: None, how: str) -> None:
    from loracle.learners.lora import hooked, merged

    lm = _copy(grid_lm)
    apply = hooked if how == "hooked" else merged
    ids = lm.tokenizer.encode(PROMPTS[0])
    base_logits = _torch_logits(lm.model, ids)
    with apply(lm.model, _factors(lm, seed=4), 1.5):  # the first engine use: it must trace the unmerged weights
        ours, theirs = _engine_logits(lm.model, ids), _torch_logits(lm.model, ids)
        decoder = _greedy(lm, PROMPTS[0], "openvino")[1]
    assert decoder == "openvino"
    assert not torch.allclose(theirs, base_logits, atol=1e-2)
    assert torch.allclose(ours, theirs, atol=2e-2 * float(theirs.abs().max()))
    after = _engine_logits(lm.model, ids)  # and once the LoRA is gone, the engine runs the base model again
    assert torch.allclose(after, base_logits, atol=2e-2 * float(base_logits.abs().max()))


def test_engine_threads_use_both_cores_only_when_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    from loracle.model import engine

    monkeypatch.delenv(engine.THREADS_ENV, raising=False)
    monkeypatch.setattr(engine.os, "cpu_count", lambda: 2)
    for load, expected in ((0.3, 2), (1.5, 1), (8.0, 1)):
        engine._chosen_threads.cache_clear()
        monkeypatch.setattr(engine.os, "getloadavg", lambda load=load: (load, load, load))
        assert engine.engine_threads() == expected
    monkeypatch.setattr(engine.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    assert engine.engine_threads() == 1  # decided once per process: no recompiling for another count
    monkeypatch.setenv(engine.THREADS_ENV, "3")
    assert engine.engine_threads() == 3
    engine._chosen_threads.cache_clear()


def _down_lora(model: torch.nn.Module, layer: int = 1) -> torch.nn.Module:
    return model.get_submodule(f"base_model.model.model.layers.{layer}.mlp.down_proj")


def test_an_adapter_changed_after_use_is_picked_up_however_it_changed(grid_lm: LoadedModel, tmp_path: Path) -> None:
    adapted = apply_adapters(_copy(grid_lm), [_adapter(grid_lm, tmp_path / "a", seed=1)])
    ids = grid_lm.tokenizer.encode(PROMPTS[0])
    before = _engine_logits(adapted.model, ids)
    lora = _down_lora(adapted.model)
    changes = [
        lambda: lora.lora_B["a0"].weight.data[5, 3].add_(2.0),  # one value, through .data: no version bump
        lambda: setattr(lora.lora_A["a0"].weight, "data", lora.lora_A["a0"].weight.data * 3),  # replaced
        lambda: lora.scaling.update(a0=lora.scaling["a0"] * -1),
    ]
    for change in changes:
        change()
        ours, theirs = _engine_logits(adapted.model, ids), _torch_logits(adapted.model, ids)
        assert not torch.allclose(ours, before, atol=1e-3)  # the change reached the engine ...
        assert torch.allclose(ours, theirs, atol=2e-2 * float(theirs.abs().max()))  # ... as it reached torch
        before = ours


def test_switching_between_unchanged_adapters_reuses_their_slot_values(
    grid_lm: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loracle.model import ov_adapters

    adapted = apply_adapters(_copy(grid_lm), [_adapter(grid_lm, tmp_path / "a", seed=1)])
    adapted.model.load_adapter(str(_adapter(grid_lm, tmp_path / "b", seed=2)), adapter_name="other")
    made = []
    monkeypatch.setattr(ov_adapters, "slot_values", lambda *args: made.append(1) or slot_values(*args))
    ids = grid_lm.tokenizer.encode(PROMPTS[1])
    for name in ("a0", "other", "a0", "other"):
        adapted.model.set_adapter(name)
        _engine_logits(adapted.model, ids)
    assert len(made) == 2  # once per adapter
    with torch.no_grad():
        _down_lora(adapted.model).lora_B["other"].weight.data[0, 0] += 1.0
    _engine_logits(adapted.model, ids)
    assert len(made) == 3


def test_one_walk_finds_the_weights_named_parameters_names(grid_lm: LoadedModel, tmp_path: Path) -> None:
    from loracle.model.ov_adapters import scan

    adapted = apply_adapters(_copy(grid_lm), [_adapter(grid_lm, tmp_path / "a", seed=1)])
    for model in (grid_lm.model, adapted.model):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        expected = {
            name.replace(".base_layer.", "."): param
            for name, param in base.named_parameters()
            if "lora_" not in name and ".modules_to_save." not in name
        }
        found = scan(model).weights
        assert list(found) == list(expected)
        assert all(found[name] is not None and torch.equal(found[name], expected[name]) for name in expected)
