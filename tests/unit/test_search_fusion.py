"""Fusion of the BM25 and vector rankings."""

from __future__ import annotations

import pytest

from loracle.search.fusion import Ranked, fuse


def ranked(scores: list[tuple[int, float]]) -> list[Ranked]:
    return [Ranked(key, score, rank) for rank, (key, score) in enumerate(scores, start=1)]


def test_clear_winner_on_one_side_beats_mediocre_on_both() -> None:
    # Page 1 is an exact rare-term match far ahead on BM25 and absent from the vector side, where 30
    # candidates sit close together; pages 10.. are mediocre on both sides.
    bm25 = ranked([(1, 25.0)] + [(10 + i, 3.0 - 0.05 * i) for i in range(29)])
    vector = ranked([(10 + i, 0.52 - 0.005 * i) for i in range(30)])
    assert fuse(bm25, vector, "zscore")[0].key == 1
    assert fuse(bm25, vector, "rrf")[0].key != 1  # rank-only fusion lets the mediocre-on-both page win


@pytest.mark.parametrize("method", ["zscore", "relative", "rrf"])
def test_agreement_wins_when_both_sides_are_strong(method: str) -> None:
    bm25 = ranked([(1, 10.0), (2, 9.5), (3, 2.0), (4, 1.9)])
    vector = ranked([(2, 0.8), (5, 0.79), (6, 0.3), (7, 0.29)])
    fused = fuse(bm25, vector, method)
    assert fused[0].key == 2 and (fused[0].bm25_rank, fused[0].vector_rank) == (2, 1)


def test_weak_vector_side_adds_nothing_in_relative() -> None:
    vector = ranked([(5, 0.1), (6, 0.05)])  # below the noise floor
    fused = fuse(ranked([(7, 1.0)]), vector, "relative")
    assert fused[0].key == 7 and fused[0].score > fused[1].score * 10


def test_empty_and_unknown() -> None:
    assert fuse([], [], "relative") == []
    with pytest.raises(ValueError):
        fuse([], [], "borda")
