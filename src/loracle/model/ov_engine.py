"""Decode with OpenVINO: the base model traced once per weights (cached on disk), adapters set per request.

The traced model (loracle.model.ov_graph, weights compressed by loracle.model.ov_weights) is cached under
<cache>/engines/openvino/<key>/, the key a hash of the base weights, the model config and the format version.
It is compiled once per thread count and set of LoRA slots in use (the slots no active adapter touches are
removed first: each costs decode time even when empty). Each generation takes an infer request from a pool
kept per compiled model, whose LoRA states are set from the adapters active on the torch model at that moment
(PEFT LoRA layers, stacked by rank, scaling folded in); a request that already holds those values is preferred,
so switching back and forth between adapters writes no state. LoRAs the weight learners apply by hooks or
in-place merges are read from loracle.model.overlay and applied the same way. What the traced model cannot
reproduce raises EngineUnavailable with the reason, and the caller decodes with torch instead: a module adapted
other than by a plain LoRA on a projection, other forward hooks, or base weights that changed since the trace in
any other way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from loracle.model.cache import ConvertedModelCache, cache_root
from loracle.model.lean import _decoder_stack, supports_lean
from loracle.model.ov_adapters import EngineUnavailable, Factors, SlotValues, ValuesCache, scan, stacked
from loracle.model.ov_graph import LORA_PARTS, keep_slots, lora_state_name, slot_parts
from loracle.model.overlay import overlays, unmerged

__all__ = ["EngineUnavailable", "OpenVINOEngine", "adapter_factors", "engine_for", "weights_key"]

#: bump when the traced graph or the weight format changes, so older cache entries are not reused
FORMAT_VERSION = "3"
XML = "model.xml"
_SAMPLE_STRIDE = 4099
#: the CPU plugin's settings: one stream, latency first, float32 arithmetic, keys and values cached as float16, and
#: no int8 rounding of activations (on by default for compressed weights: greedy agreement with torch fell from
#: 16 of 16 prompts' tokens to 0.89 of them, at no measured gain in speed)
COMPILE_CONFIG = {
    "NUM_STREAMS": 1,
    "PERFORMANCE_HINT": "LATENCY",
    "INFERENCE_PRECISION_HINT": "f32",
    "KV_CACHE_PRECISION": "f16",
    "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0,
}
#: compiled models kept per engine (each holds its own copy of the weights), idle requests per compiled model, and
#: adapter sets whose slot values are kept
MAX_COMPILED = 4
MAX_IDLE = 4
MAX_VALUES = 8

Step = Callable[[list[int]], torch.Tensor]


def _base(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every base weight the traced model holds, by its name in the unwrapped model (PEFT layers looked through)."""
    return scan(model).weights


def _sample_index(weight: torch.Tensor) -> torch.Tensor:
    return torch.arange(0, weight.numel(), _SAMPLE_STRIDE)


def _samples(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every `_SAMPLE_STRIDE`th value of each weight (views: clone them to keep them)."""
    return {name: w.reshape(-1)[::_SAMPLE_STRIDE] for name, w in weights.items()}


def weights_key(model: nn.Module) -> str:
    """A hash of the base weights and config: the cache key of the traced model."""
    digest = hashlib.sha256(f"openvino-engine-{FORMAT_VERSION};".encode())
    digest.update(_base(model).config.to_json_string(use_diff=False).encode())
    for weight in _weights(model).values():
        digest.update(str(tuple(weight.shape)).encode())
        digest.update(weight.float().contiguous().numpy().data)
    return digest.hexdigest()[:32]


class _Pooled:
    """An infer request with handles on its states, and the LoRA values they hold now."""

    def __init__(self, request) -> None:
        self.request = request
        states = request.query_state()
        self.cache = [state for state in states if not state.name.startswith("lora.")]
        self.lora = {state.name: state for state in states if state.name.startswith("lora.")}
        self.values: SlotValues = {}

    def holds(self, values: SlotValues) -> bool:
        return self.values is values or (
            self.values.keys() == values.keys() and all(_same(self.values[slot], pair) for slot, pair in values.items())
        )

    def load(self, values: SlotValues) -> None:
        """Set the LoRA states to `values` (those already holding them are left alone) and empty the KV cache."""
        import openvino as ov

        for slot, (a, b) in values.items():
            if slot in self.values and (self.values[slot] is values[slot] or _same(self.values[slot], (a, b))):
                continue
            parts = {"A": a, "alpha": np.ones((1, a.shape[1]), dtype=np.float32), "B": b}
            for part in LORA_PARTS:
                self.lora[lora_state_name(slot, part)].state = ov.Tensor(parts[part])
        self.values = values
        for state in self.cache:
            state.reset()


def _same(ours: tuple[np.ndarray, np.ndarray], theirs: tuple[np.ndarray, np.ndarray]) -> bool:
    return all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(ours, theirs, strict=True))


class OpenVINOEngine:
    """The traced base model, compiled per thread count and slot set, and a step function per generation."""

    def __init__(self, model: nn.Module, root: Path | None = None) -> None:
        import openvino as ov

        base = _base(model)
        self._samples = {name: sample.clone() for name, sample in _samples(_weights(model)).items()}
        self.parts = slot_parts(base)
        self.slots = set(self.parts)
        self._values = ValuesCache(self.parts, MAX_VALUES)
        self.folder = _traced(model, root or cache_root())
        self.core = ov.Core()
        self._compiled: OrderedDict[tuple[int, frozenset[str]], object] = OrderedDict()
        self._idle: dict[tuple[int, frozenset[str]], list[_Pooled]] = {}
        self._lock = threading.Lock()

    def compiled(self, threads: int, slots: frozenset[str]):
        """The model with the LoRA slots `slots` only, compiled for `threads` threads on first use."""
        key = (threads, slots)
        with self._lock:
            if key not in self._compiled:
                traced = keep_slots(self.core.read_model(str(self.folder / XML)), set(slots))
                config = {**COMPILE_CONFIG, "INFERENCE_NUM_THREADS": threads}
                self._compiled[key] = self.core.compile_model(traced, "CPU", config)
                while len(self._compiled) > MAX_COMPILED:
                    self._idle.pop(self._compiled.popitem(last=False)[0], None)
            self._compiled.move_to_end(key)
            return self._compiled[key]

    def check_fresh(self, model: nn.Module, weights: dict[str, torch.Tensor] | None = None) -> None:
        """Raise EngineUnavailable if the base weights (`weights`, if found already) differ from those traced
        (sampled, so it is cheap), once the LoRAs recorded as merged into them (loracle.model.overlay) are taken out."""
        weights = _weights(model) if weights is None else weights
        current = _samples(weights)
        merged = _merged_samples(model, weights)
        if current.keys() != self._samples.keys():
            raise EngineUnavailable("the model's parameters differ from those traced")
        for name, sample in current.items():
            traced = self._samples[name]
            fresh = (
                torch.allclose(sample, traced + merged[name], rtol=1e-5, atol=1e-6)
                if name in merged
                else torch.equal(sample, traced)
            )
            if not fresh:
                raise EngineUnavailable(f"{name} changed since the model was traced")

    def step_function(self, model: nn.Module, threads: int) -> Step:
        """A fresh generation's step: feeds ids at the next positions, returns the last position's logits."""
        found = scan(model, self.slots)
        self.check_fresh(model, found.weights)
        values = self._values.values(found.terms)
        key = (threads, frozenset(values))
        pooled = self._acquire(key, values)
        request = pooled.request
        position = 0
        beam = np.zeros(1, dtype=np.int32)

        def step(ids: list[int]) -> torch.Tensor:
            nonlocal position
            end = position + len(ids)
            request.infer(
                {
                    "input_ids": np.array([ids], dtype=np.int64),
                    "attention_mask": np.ones((1, end), dtype=np.int64),
                    "position_ids": np.arange(position, end, dtype=np.int64)[None],
                    "beam_idx": beam,
                }
            )
            position = end
            return torch.from_numpy(request.get_tensor("logits").data[0, -1].copy())

        weakref.finalize(step, self._release, key, pooled)  # back to the pool once the generation is done with it
        return step

    def _acquire(self, key: tuple[int, frozenset[str]], values: SlotValues) -> _Pooled:
        """A request of `key`'s compiled model loaded with `values`: an idle one that holds them already, else a new
        one while the pool is not full (so that alternating adapters each keep theirs), else the oldest idle one."""
        compiled = self.compiled(*key)
        with self._lock:
            idle = self._idle.setdefault(key, [])
            chosen = next((p for p in idle if p.holds(values)), idle[0] if len(idle) >= MAX_IDLE else None)
            if chosen is not None:
                idle.remove(chosen)
        chosen = chosen or _Pooled(compiled.create_infer_request())
        chosen.load(values)
        return chosen

    def _release(self, key: tuple[int, frozenset[str]], pooled: _Pooled) -> None:
        with self._lock:
            if key in self._compiled:
                idle = self._idle.setdefault(key, [])
                idle.append(pooled)
                del idle[:-MAX_IDLE]


def _merged_samples(model: nn.Module, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What the LoRAs recorded as merged into `model` add to each sampled weight, by weight name."""
    added: dict[str, torch.Tensor] = {}
    for overlay in overlays(model):
        if not overlay.merged:
            continue
        for path, (a, b) in overlay.factors.items():
            name = f"{path}.weight"
            index = _sample_index(weights[name])
            rows, cols = index // weights[name].shape[1], index % weights[name].shape[1]
            delta = (b[rows].float() * a[:, cols].t().float()).sum(-1) * overlay.scale
            added[name] = added.get(name, 0) + delta
    return added


def adapter_factors(model: nn.Module, slots: set[str]) -> Factors:
    """(A^T [in, r], (B scaling)^T [r, out]) per adapted projection: every active PEFT LoRA and every LoRA recorded
    in loracle.model.overlay, stacked by rank.

    Raises EngineUnavailable for what the traced model has no slot for.
    """
    return stacked(scan(model, slots).terms)


def _traced(model: nn.Module, root: Path) -> Path:
    """The cache folder of the traced model for these weights, tracing and compressing it first on a miss."""
    cache = ConvertedModelCache(root, kind="engines/openvino")
    entry = cache.root / weights_key(model)
    if cache.is_complete(entry) and cache.sizes_match(entry):
        return entry
    cache.discard(entry)
    import openvino as ov

    from loracle.model.ov_graph import trace
    from loracle.model.ov_weights import compress

    logging.getLogger(__name__).warning("preparing the OpenVINO engine for this base model (once; about a minute)")
    staging = cache.staging_dir()
    with torch.no_grad():
        traced = trace(_base(model))
    counts = compress(traced)
    ov.save_model(traced, str(staging / XML), compress_to_fp16=False)
    (staging / "weights.json").write_text(json.dumps({"weights_by_grid": counts}))
    cache.publish(staging, entry, Path(XML))
    return entry


_ENGINES: weakref.WeakKeyDictionary[nn.Module, OpenVINOEngine] = weakref.WeakKeyDictionary()
_ENGINES_LOCK = threading.Lock()


def engine_for(model: nn.Module) -> OpenVINOEngine:
    """The engine of `model`'s base weights (traced or read from the cache once per base model and process).

    What it could not run is refused before anything is traced (EngineUnavailable).
    """
    base = _base(model)
    if not supports_lean(model) or _decoder_stack(model) is None:
        raise EngineUnavailable(f"{type(base).__name__} is not a Llama-family model")
    if next(base.parameters()).device.type != "cpu":
        raise EngineUnavailable("the model is not on the CPU")
    with _ENGINES_LOCK:
        engine = _ENGINES.get(base)
        if engine is None:
            adapter_factors(model, set(slot_parts(base)))  # refused before anything is traced
            with unmerged(model):  # traced from the base weights, not a learner's adapter merged into them
                engine = _ENGINES[base] = OpenVINOEngine(model)
        return engine
