"""Process-wide torch settings, chosen deliberately (two threads were erratic on small shared VMs)."""

from __future__ import annotations

import os

import torch

THREADS_ENV = "LORACLE_THREADS"


def default_threads() -> int:
    """Threads for decoding: LORACLE_THREADS if set, else all cores up to 4.

    benchmarks/generate.py measures 1 vs 2 threads on the target machine; see RESULTS.md.
    """
    env = os.environ.get(THREADS_ENV)
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(4, os.cpu_count() or 1))


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
