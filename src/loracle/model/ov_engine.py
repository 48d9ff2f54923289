"""Decode with OpenVINO: the base model traced once per weights (cached on disk), adapters set per request.

The traced model (loracle.model.ov_graph, weights compressed by loracle.model.ov_weights) is cached under
<cache>/engines/openvino/<key>/, the key a hash of the base weights, the model config and the format version.
Each generation gets its own infer request, whose LoRA states are set from the adapters active on the torch
model at that moment (PEFT LoRA layers, stacked by rank, scaling folded in), so switching adapters costs only
copying their factors. LoRAs the weight learners apply by hooks or in-place merges are read from
loracle.model.overlay and applied the same way. What the traced model cannot reproduce raises EngineUnavailable
with the reason, and the caller decodes with torch instead: a module adapted other than by a plain LoRA on a
projection, other forward hooks, or base weights that changed since the trace in any other way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from loracle.model.cache import ConvertedModelCache, cache_root
from loracle.model.lean import LowRankDelta, _decoder_stack, supports_lean
from loracle.model.ov_graph import LORA_PARTS, lora_state_name, slot_paths
from loracle.model.overlay import overlays, unmerged

#: bump when the traced graph or the weight format changes, so older cache entries are not reused
FORMAT_VERSION = "2"
#: the traced model with LoRA slots, and without (for generations without adapters: ~10% faster)
XML = {True: "lora.xml", False: "base.xml"}
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
_PEFT_PREFIX = "base_model.model."

Step = Callable[[list[int]], torch.Tensor]


class EngineUnavailable(Exception):
    """The engine cannot decode this model as it stands; the message says why in one line."""


def _base(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every base weight the traced model holds, by its name in the unwrapped model (PEFT layers looked through)."""
    found = {}
    for name, param in _base(model).named_parameters():
        if "lora_" not in name and ".modules_to_save." not in name:
            found[name.replace(".base_layer.", ".")] = param.detach()
    return found


def _sample_index(weight: torch.Tensor) -> torch.Tensor:
    return torch.arange(0, weight.numel(), _SAMPLE_STRIDE)


def _samples(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: w.reshape(-1)[_sample_index(w)].clone() for name, w in weights.items()}


def weights_key(model: nn.Module) -> str:
    """A hash of the base weights and config: the cache key of the traced model."""
    digest = hashlib.sha256(f"openvino-engine-{FORMAT_VERSION};".encode())
    digest.update(_base(model).config.to_json_string(use_diff=False).encode())
    for weight in _weights(model).values():
        digest.update(str(tuple(weight.shape)).encode())
        digest.update(weight.float().contiguous().numpy().data)
    return digest.hexdigest()[:32]


class OpenVINOEngine:
    """The traced base model, compiled per thread count, and a step function per generation."""

    def __init__(self, model: nn.Module, root: Path | None = None) -> None:
        import openvino as ov

        base = _base(model)
        self._samples = _samples(_weights(model))
        self.slots = set(slot_paths(base))
        self.folder = _traced(model, root or cache_root())
        self.core = ov.Core()
        self.core.set_property({"CACHE_DIR": str(self.folder.parent / "compiled")})
        self._compiled: dict[tuple[int, bool], object] = {}
        self._lock = threading.Lock()

    def compiled(self, threads: int, lora: bool):
        """The model (with LoRA slots or without) compiled for `threads` threads, compiled on first use."""
        with self._lock:
            if (threads, lora) not in self._compiled:
                self._compiled[threads, lora] = self.core.compile_model(
                    str(self.folder / XML[lora]), "CPU", {**COMPILE_CONFIG, "INFERENCE_NUM_THREADS": threads}
                )
            return self._compiled[threads, lora]

    def check_fresh(self, model: nn.Module) -> None:
        """Raise EngineUnavailable if the base weights differ from those traced (sampled, so it is cheap), once the
        LoRAs recorded as merged into them (loracle.model.overlay) are taken out."""
        weights = _weights(model)
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
        deltas = adapter_factors(model, self.slots)
        self.check_fresh(model)
        request = self.compiled(threads, bool(deltas)).create_infer_request()
        set_lora_states(request, deltas)
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

        return step


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


def adapter_factors(model: nn.Module, slots: set[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(A^T [in, r], (B scaling)^T [r, out]) per adapted projection: every active PEFT LoRA and every LoRA recorded
    in loracle.model.overlay, stacked by rank.

    Raises EngineUnavailable for what the traced model has no slot for.
    """
    stacked: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    hooked: dict[str, int] = {}
    for overlay in overlays(model):
        for path, (a, b) in overlay.factors.items():
            if path not in slots:
                raise EngineUnavailable(f"{path}: the engine applies LoRA to attention and MLP projections only")
            stacked.setdefault(path, []).append((a.detach().t(), (b.detach() * overlay.scale).t()))
            hooked[path] = hooked.get(path, 0) + (not overlay.merged)
    for name, module in model.named_modules():
        path = name.removeprefix(_PEFT_PREFIX)
        if module._forward_pre_hooks or len(module._forward_hooks) > hooked.get(path, 0):
            raise EngineUnavailable(f"{name or 'the model'} has forward hooks, which the engine cannot run")
        if not hasattr(module, "lora_A") or not hasattr(module, "base_layer"):
            continue
        delta = LowRankDelta.of(module)
        if delta is None:
            if getattr(module, "merged", False) or getattr(module, "disable_adapters", False):
                continue  # merged: caught by the weights check; disabled: nothing to add
            if not any(n in module.lora_A for n in module.active_adapters):
                continue
            raise EngineUnavailable(f"{path}: a LoRA variant (DoRA, bias, ...) the engine cannot apply")
        if path not in slots:
            raise EngineUnavailable(f"{path}: the engine applies LoRA to attention and MLP projections only")
        stacked.setdefault(path, []).append((delta.a_t, delta.bs_t))
    return {
        path: (torch.cat([a for a, _ in parts], dim=1), torch.cat([b for _, b in parts], dim=0))
        for path, parts in stacked.items()
    }


def set_lora_states(request, factors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Write each slot's A, alpha (ones: scaling is folded into B) and B into the request's states."""
    import openvino as ov

    if not factors:
        return
    states = {state.name: state for state in request.query_state()}
    for path, (a_t, bs_t) in factors.items():
        rank = a_t.shape[1]
        values = {
            "A": a_t.detach().float().contiguous().numpy(),
            "alpha": np.ones((1, rank), dtype=np.float32),
            "B": bs_t.detach().float().contiguous().numpy(),
        }
        for part in LORA_PARTS:
            states[lora_state_name(path, part)].state = ov.Tensor(values[part])


def _traced(model: nn.Module, root: Path) -> Path:
    """The cache folder of the traced models for these weights, tracing and compressing them first on a miss."""
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
    for lora, name in XML.items():
        with torch.no_grad():
            traced = trace(_base(model), lora=lora)
        counts = compress(traced)
        ov.save_model(traced, str(staging / name), compress_to_fp16=False)
    (staging / "weights.json").write_text(json.dumps({"weights_by_grid": counts}))
    cache.publish(staging, entry, Path(XML[True]))
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
    adapter_factors(model, set(slot_paths(base)))
    with _ENGINES_LOCK:
        engine = _ENGINES.get(base)
        if engine is None:
            with unmerged(model):  # traced from the base weights, not a learner's adapter merged into them
                engine = _ENGINES[base] = OpenVINOEngine(model)
        return engine
