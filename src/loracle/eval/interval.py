"""How far a measured accuracy ratio can be trusted: a paired bootstrap interval over the questions.

A learner's accuracy over the ceiling's, on a few dozen questions, moves by several points when one reply
changes; a target compared against the point figure alone says little. Resampling the questions (each keeps
its learner and ceiling result together, since both answered the same question) shows the spread.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

#: a fixed seed, so that the same results always give the same interval
SEED = 0


def ratio_interval(
    right: Sequence[bool], reference: Sequence[bool], confidence: float = 0.95
) -> tuple[float, float] | None:
    """The `confidence` percentile-bootstrap interval of sum(right) / sum(reference), question by question
    paired; None when the reference gets nothing right, or when some resamples do (the ratio is unbounded),
    or for a single question (nothing to resample)."""
    from scipy.stats import DegenerateDataWarning, bootstrap

    if len(right) != len(reference):
        raise ValueError(f"paired results differ in length: {len(right)} against {len(reference)}")
    if len(reference) < 2 or not any(reference):
        return None
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)  # all results alike: the interval is one point
        result = bootstrap(
            (np.asarray(right, dtype=float), np.asarray(reference, dtype=float)),
            lambda r, c, axis: r.sum(axis) / c.sum(axis),
            paired=True,
            vectorized=True,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(SEED),
        )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return None if not (np.isfinite(low) and np.isfinite(high)) else (low, high)
