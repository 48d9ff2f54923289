"""Which engine decodes: torch (the reference, always available) or OpenVINO (faster on a CPU).

The choice is process-wide, like the thread count: `[model] engine` in loracle.toml or `--engine`, applied once
by the command (select_engine), or LORACLE_ENGINE in the environment. Every generation then goes through
loracle.model.generate as before; with "openvino" it asks the engine for a step function and, where the engine
cannot reproduce the model as it stands (see loracle.model.ov_engine.EngineUnavailable), decodes with torch and
logs one warning line per reason. Training always runs in torch.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from collections.abc import Callable

import torch

from loracle.errors import LoracleError

ENGINES = ("torch", "openvino")
ENGINE_ENV = "LORACLE_ENGINE"
THREADS_ENV = "LORACLE_ENGINE_THREADS"
#: the pinned OpenVINO release (the dev and engine extras of pyproject.toml install it)
OPENVINO_PIN = "openvino==2026.4.1"

_selected: str | None = None
_warned: set[str] = set()

Step = Callable[[list[int]], torch.Tensor]


class EngineError(LoracleError):
    """An engine that does not exist or cannot run here."""


def check_engine(name: str) -> str:
    """`name` if it is an engine that can run here, else an EngineError naming the problem."""
    if name not in ENGINES:
        raise EngineError(f"unknown engine {name!r}: one of {', '.join(ENGINES)}")
    if name == "openvino" and importlib.util.find_spec("openvino") is None:
        raise EngineError(f"engine 'openvino' needs the openvino package: run setup.sh, or pip install {OPENVINO_PIN}")
    return name


def select_engine(name: str) -> str:
    """Decode with `name` from now on in this process (checked first)."""
    global _selected
    _selected = check_engine(name)
    return _selected


def prefer_engine(name: str) -> str:
    """Select `name` (a knowledge base's [model] engine) unless --engine or LORACLE_ENGINE chose already."""
    if _selected is None and not os.environ.get(ENGINE_ENV):
        return select_engine(name)
    return selected_engine()


def selected_engine() -> str:
    """The engine in use: the one selected, else LORACLE_ENGINE, else torch."""
    if _selected is not None:
        return _selected
    return check_engine(os.environ.get(ENGINE_ENV) or "torch")


def engine_threads() -> int:
    """Threads for the OpenVINO engine: LORACLE_ENGINE_THREADS if set; on a machine of more than two cores, torch's
    thread count; on two cores or fewer, every core while the machine is idle (1-minute load average under one),
    else one. Decided at the first generation and kept, so a process never recompiles for another count.

    benchmarks/engine.py on the 2-core VM: idle, two threads decoded 1.4x faster than one (84 vs 60 tokens/s); at
    load 8-9, two decoded at about half the speed of one (docs/experiments/engine.md).
    """
    env = os.environ.get(THREADS_ENV, "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return _chosen_threads()


@functools.cache
def _chosen_threads() -> int:
    cores = os.cpu_count() or 1
    if cores > 2:
        return torch.get_num_threads()
    return cores if os.getloadavg()[0] < 1.0 else 1


def engine_step(model: torch.nn.Module) -> Step | None:
    """A step function from the selected engine for a fresh generation, or None to decode with torch."""
    if selected_engine() == "torch":
        return None
    from loracle.model.ov_engine import EngineUnavailable, engine_for

    try:
        return engine_for(model).step_function(model, engine_threads())
    except EngineUnavailable as exc:
        reason = str(exc)
        if reason not in _warned:
            _warned.add(reason)
            logging.getLogger(__name__).warning("openvino engine: %s; decoding with torch", reason)
        return None
