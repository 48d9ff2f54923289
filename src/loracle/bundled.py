"""Text files shipped inside the package (loracle/data/): the general prompts and calibration text.

The general prompts are everyday questions and requests, disjoint from the sets the eval harness measures
forgetting on: the ttt learner trains every adapter to leave them as the base model answers them, bake trains
on them, and the adapter router treats a question nearer to them than to any adapter's trained questions as
one for the base model (loracle.routing).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

GENERAL_PROMPTS_FILE = "general_prompts.txt"


def bundled_lines(name: str) -> list[str]:
    """The non-empty, non-comment lines of a bundled data file."""
    text = resources.files("loracle").joinpath("data", name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@cache
def _general_prompts() -> tuple[str, ...]:
    return tuple(bundled_lines(GENERAL_PROMPTS_FILE))


def general_prompts() -> list[str]:
    """The bundled general questions and requests."""
    return list(_general_prompts())
