"""Process-wide torch settings, chosen deliberately (two threads were erratic on small shared VMs)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from loracle.kb import KBPaths
    from loracle.model.loader import LoadedModel

THREADS_ENV = "LORACLE_THREADS"


def default_threads() -> int:
    """Threads for decoding: LORACLE_THREADS if set; else all cores up to 4, or one if OpenMP workers spin.

    Decoding a small model is bound by memory bandwidth. On the 2-core target VM, the generate benchmark
    measured two threads as faster than one in most same-trial comparisons once OpenMP workers sleep while idle
    (OMP_WAIT_POLICY=PASSIVE, set by `import loracle`), and slower when the machine was very busy; with spinning
    workers (torch imported before loracle) two threads were 15-35x slower, so then one thread is used on small
    machines. More than 2 cores was not measured here; 4 threads is a conservative cap.
    """
    return _threads_and_reason()[0]


def threads_reason() -> str:
    """Why default_threads() chose what it did, for `loracle doctor`."""
    return _threads_and_reason()[1]


def _threads_and_reason() -> tuple[int, str]:
    from loracle import OMP_WORKERS_SLEEP

    env = os.environ.get(THREADS_ENV)
    if env and env.isdigit() and int(env) > 0:
        return int(env), f"from {THREADS_ENV}"
    cores = os.cpu_count() or 1
    if cores <= 2 and not OMP_WORKERS_SLEEP:
        return 1, "OpenMP workers spin (torch was loaded before loracle): a second thread measured far slower"
    return min(4, cores), f"{cores} cores, at most 4 (the generate benchmark measured 1 vs 2)"


def configure_threads(threads: int = 0) -> int:
    """Set torch's intra-op thread count (0 = default_threads()) and return it."""
    n = threads if threads > 0 else default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def pick_device(requested: str | None = None) -> torch.device:
    """'cuda' when available unless told otherwise; CPU is the design target."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_kb_model(kb: KBPaths) -> LoadedModel:
    """The base model the knowledge base's loracle.toml names, with its thread setting applied first."""
    from loracle.model import load_model
    from loracle.model.engine import prefer_engine

    config = kb.config()
    configure_threads(config.model.threads)
    prefer_engine(config.model.engine)
    return load_model(config.model.base)
