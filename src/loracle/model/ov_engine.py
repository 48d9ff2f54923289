"""Decode with OpenVINO: the base model traced once per weights (cached on disk), adapters set per request.

The traced model (loracle.model.ov_graph, weights compressed by loracle.model.ov_weights) is cached under
<cache>/engines/openvino/<key>/, the key a hash of the base weights, the model config and the format version.
Each generation gets its own infer request, whose LoRA states are set from the adapters active on the torch
model at that moment (PEFT LoRA layers, stacked by rank, scaling folded in), so switching adapters costs only
copying their factors. What the traced model cannot reproduce raises EngineUnavailable with the reason, and
the caller decodes with torch instead: a module adapted other than by a plain LoRA on a projection, forward
hooks, or base weights that changed since the trace (e.g. an adapter merged into them in place).
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

#: bump when the traced graph or the weight format changes, so older cache entries are not reused
FORMAT_VERSION = "1"
#: the traced model with LoRA slots, and without (for generations without adapters: ~10% faster)
XML = {True: "lora.xml", False: "base.xml"}
_SAMPLE_STRIDE = 4099
_PEFT_PREFIX = "base_model.model."

Step = Callable[[list[int]], torch.Tensor]


class EngineUnavailable(Exception):
    """The engine cannot decode this model as it stands; the message says why in one line."""


def _base(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """Every base weight the traced model holds, in a fixed order (PEFT layers looked through)."""
    found = []
    for name, param in _base(model).named_parameters():
        if "lora_" not in name and ".modules_to_save." not in name:
            found.append(param.detach())
    return found


def _samples(weights: list[torch.Tensor]) -> list[torch.Tensor]:
    return [w.reshape(-1)[::_SAMPLE_STRIDE].clone() for w in weights]


def weights_key(model: nn.Module) -> str:
    """A hash of the base weights and config: the cache key of the traced model."""
    digest = hashlib.sha256(f"openvino-engine-{FORMAT_VERSION};".encode())
    digest.update(_base(model).config.to_json_string(use_diff=False).encode())
    for weight in _weights(model):
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
                    str(self.folder / XML[lora]),
                    "CPU",
                    {
                        "INFERENCE_NUM_THREADS": threads,
                        "NUM_STREAMS": 1,
                        "PERFORMANCE_HINT": "LATENCY",
                        "INFERENCE_PRECISION_HINT": "f32",
                        "KV_CACHE_PRECISION": "f16",
                    },
                )
            return self._compiled[threads, lora]

    def check_fresh(self, model: nn.Module) -> None:
        """Raise EngineUnavailable if the base weights differ from those traced (sampled, so it is cheap)."""
        current = _samples(_weights(model))
        if len(current) != len(self._samples) or not all(
            a.shape == b.shape and torch.equal(a, b) for a, b in zip(current, self._samples, strict=False)
        ):
            raise EngineUnavailable("the base weights changed since the model was traced (an adapter merged in?)")

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


def adapter_factors(model: nn.Module, slots: set[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(A^T [in, r], (B scaling)^T [r, out]) per adapted projection: every active PEFT LoRA stacked by rank.

    Raises EngineUnavailable for what the traced model has no slot for.
    """
    factors = {}
    for name, module in model.named_modules():
        if module._forward_hooks or module._forward_pre_hooks:
            raise EngineUnavailable(f"{name or 'the model'} has forward hooks, which the engine cannot run")
        if not hasattr(module, "lora_A") or not hasattr(module, "base_layer"):
            continue
        path = name.removeprefix(_PEFT_PREFIX)
        delta = LowRankDelta.of(module)
        if delta is None:
            if getattr(module, "merged", False) or getattr(module, "disable_adapters", False):
                continue  # merged: caught by the weights check; disabled: nothing to add
            if not any(n in module.lora_A for n in module.active_adapters):
                continue
            raise EngineUnavailable(f"{path}: a LoRA variant (DoRA, bias, ...) the engine cannot apply")
        if path not in slots:
            raise EngineUnavailable(f"{path}: the engine applies LoRA to attention and MLP projections only")
        factors[path] = (delta.a_t, delta.bs_t)
    return factors


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
            engine = _ENGINES[base] = OpenVINOEngine(model)
        return engine
