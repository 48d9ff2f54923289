"""Helpers shared by the dev-data scripts (kstore_dev, context_dev, ttt_dev): generated documents' titles and
the arithmetic of a relevance gate scored without decoding again."""

from __future__ import annotations

import math
import re
import statistics


def title_of(text: str) -> str:
    """The entity a generated document is about (its first words up to "is"/"was")."""
    return re.split(r" (?:is|was) ", text, maxsplit=1)[0].removeprefix("The ")


def ceil3(x: float) -> float:
    return math.ceil(x * 1000) / 1000


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def gated(config: list[dict], base: list[dict], scores: list[float], gate: float) -> tuple[float, float]:
    """Accuracy and mean F1 when questions scoring below `gate` get the base model's reply."""
    picked = [c if s >= gate else b for c, b, s in zip(config, base, scores, strict=True)]
    return statistics.mean(p["correct"] for p in picked), statistics.mean(p["f1"] for p in picked)


def pass_rate(scores: list[float], gate: float) -> float:
    """The share of `scores` at or above `gate`."""
    return sum(s >= gate for s in scores) / len(scores)
