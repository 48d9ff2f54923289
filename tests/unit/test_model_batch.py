"""Batched greedy generation: padding and a shared start prefilled once change no row's continuation."""

from __future__ import annotations

from loracle.model.batch import greedy_batch, shared_start


def test_batch_with_a_shared_start_continues_each_row_as_it_would_alone(tiny_lm, one_thread) -> None:
    tok = tiny_lm.tokenizer
    start = "The Kestrel Valley Observatory was founded by Ilse Marrow in 1987.\n\n"
    prompts = [tok.encode(start + t) for t in ("Question: Who founded it?", "Paris", "The river Corra powers it.")]
    assert shared_start(prompts) > 10
    alone = [greedy_batch(tiny_lm, [p], 12)[0] for p in prompts]
    assert len(set(alone)) > 1  # rows that continue differently, so a row mix-up would show
    assert greedy_batch(tiny_lm, prompts, 12) == alone


def test_shared_start_leaves_every_row_a_token_of_its_own() -> None:
    assert shared_start([[1, 2, 3], [1, 2, 3]]) == 2
    assert shared_start([[1, 2], [1, 2, 3, 4]]) == 1
    assert shared_start([[5, 2], [1, 2]]) == 0
    assert shared_start([[7]]) == 0


def test_no_prompts_no_generation(tiny_lm) -> None:
    assert greedy_batch(tiny_lm, [], 8) == []
