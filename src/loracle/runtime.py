"""Process-wide torch settings, chosen deliberately (two threads were erratic on small shared VMs)."""

from __future__ import annotations

import os

import torch

THREADS_ENV = "LORACLE_THREADS"


def default_threads() -> int:
    """Threads for decoding: LORACLE_THREADS if set; one with two cores or fewer; else half the cores, up to 4.

    Decoding a small model is bound by memory bandwidth, not arithmetic. benchmarks/generate.py measured the
    2-core target VM: a second thread made decode several times slower whenever the machine was busy
    (it competes with everything else for the other core), so one thread is the default there. On bigger
    machines half the cores (leaving the rest to the system) is a conservative, unmeasured choice.
    """
    return _threads_and_reason()[0]


def threads_reason() -> str:
    """Why default_threads() chose what it did, for `loracle doctor`."""
    return _threads_and_reason()[1]


def _threads_and_reason() -> tuple[int, str]:
    env = os.environ.get(THREADS_ENV)
    if env and env.isdigit() and int(env) > 0:
        return int(env), f"from {THREADS_ENV}"
    cores = os.cpu_count() or 1
    if cores <= 2:
        return 1, f"{cores} cores: a second thread measured slower on a busy 2-core machine (benchmarks/generate.py)"
    return min(4, cores // 2), f"{cores} cores: half of them, at most 4"


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
