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


def test_line_end_tokens_are_those_holding_a_line_break(tiny_lm) -> None:
    from loracle.model.batch import line_end_ids

    tok = tiny_lm.tokenizer
    ends = line_end_ids(tok)
    assert tok.convert_tokens_to_ids(tok.tokenize("\n"))[0] in ends
    assert not ends & set(tok.encode("Paris is the capital of France.", add_special_tokens=False))


def test_one_line_stops_each_row_after_its_first_line_end(tiny_lm, one_thread, monkeypatch) -> None:
    import torch

    from loracle.model import batch

    tok = tiny_lm.tokenizer
    prompts = [tok.encode("Paris"), tok.encode("The river Corra powers it.")]
    with torch.no_grad():
        first = int(tiny_lm.model.generate(torch.tensor([prompts[0]]), max_new_tokens=1, do_sample=False)[0, -1])
    free = greedy_batch(tiny_lm, prompts, 12)
    assert first not in set(tok.encode(free[1], add_special_tokens=False))
    # let the first row's first generated token stand for a line break
    monkeypatch.setattr(batch, "line_end_ids", lambda _tokenizer: frozenset({first}))
    short = greedy_batch(tiny_lm, prompts, 12, one_line=True)
    assert short[0] == tok.decode([first]).strip() and short[0] != free[0]  # stopped, keeping that token
    assert short[1] == free[1]  # a row with no line end runs on as before
