"""Fusing a BM25 ranking and a vector ranking into one list.

Three methods, compared on the search benchmark's known-answer set:
- `rrf`: reciprocal rank fusion, sum of 1/(k + rank). Scale-free, but it only sees ranks, so a page that is
  a clear winner on one side ties with a page that is mediocre on both.
- `zscore` (default): each side's scores as standard scores within its candidate list; a page's fused score
  is the sum of its above-average parts (below-average or missing counts 0, so being weak on one side never
  pulls down a strong match on the other). An outlier on one side stands out; a flat list adds little.
- `relative`: each side's scores are divided by that side's best score in this query (BM25) or
  rescaled between a floor and the best cosine (vector), so the top hit on each side is 1.0; a page's fused
  score is the larger side plus a share of the smaller one, plus a small RRF term to break ties. It ignores
  how far ahead the top is, so a flat vector list (no real match) still counts as a full-strength side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

RRF_K = 60
# Cosines of all-MiniLM-L6-v2 between unrelated texts sit around 0.0-0.2; below this a vector hit is noise.
VECTOR_FLOOR = 0.15
SECOND_SIDE_SHARE = 0.5
FUSION_METHODS = ("relative", "rrf", "zscore")


@dataclass(frozen=True)
class Ranked:
    """One side's candidate: a key (row id), its raw score (higher is better) and its 1-based rank."""

    key: int
    score: float
    rank: int


@dataclass(frozen=True)
class Fused:
    key: int
    score: float
    bm25_rank: int | None
    vector_rank: int | None


DEFAULT_FUSION = "zscore"


def fuse(bm25: Sequence[Ranked], vector: Sequence[Ranked], method: str = DEFAULT_FUSION) -> list[Fused]:
    """Both rankings fused, best first."""
    if method not in FUSION_METHODS:
        raise ValueError(f"unknown fusion method {method!r} (choose from {', '.join(FUSION_METHODS)})")
    b_rank = {r.key: r.rank for r in bm25}
    v_rank = {r.key: r.rank for r in vector}
    rrf = {key: _rrf(b_rank.get(key)) + _rrf(v_rank.get(key)) for key in b_rank.keys() | v_rank.keys()}
    if method == "rrf":
        scores = rrf
    elif method == "zscore":
        b_z, v_z = _zscores(bm25), _zscores(vector)
        scores = {key: max(b_z.get(key, 0.0), 0.0) + max(v_z.get(key, 0.0), 0.0) + tie for key, tie in rrf.items()}
    else:
        b_norm = _relative_bm25(bm25)
        v_norm = _relative_vector(vector)
        scores = {}
        for key, tie_break in rrf.items():
            b, v = b_norm.get(key, 0.0), v_norm.get(key, 0.0)
            scores[key] = max(b, v) + SECOND_SIDE_SHARE * min(b, v) + tie_break
    fused = [Fused(key, score, b_rank.get(key), v_rank.get(key)) for key, score in scores.items()]
    fused.sort(key=lambda f: (-f.score, f.key))
    return fused


def _rrf(rank: int | None) -> float:
    return 0.0 if rank is None else 1.0 / (RRF_K + rank)


def _zscores(ranked: Sequence[Ranked]) -> dict[int, float]:
    """Standard scores within this candidate list: an outlier stands out, a flat list stays near 0."""
    values = [r.score for r in ranked]
    if not values:
        return {}
    mean = sum(values) / len(values)
    spread = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return {r.key: (r.score - mean) / spread if spread else 0.0 for r in ranked}


def _relative_bm25(ranked: Sequence[Ranked]) -> dict[int, float]:
    best = max((r.score for r in ranked), default=0.0)
    if best <= 0:
        return {}
    return {r.key: max(r.score, 0.0) / best for r in ranked}


def _relative_vector(ranked: Sequence[Ranked]) -> dict[int, float]:
    best = max((r.score for r in ranked), default=0.0)
    if best <= VECTOR_FLOOR:
        return {}
    return {r.key: max(r.score - VECTOR_FLOOR, 0.0) / (best - VECTOR_FLOOR) for r in ranked}
