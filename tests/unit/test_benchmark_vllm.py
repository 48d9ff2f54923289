"""The vLLM comparison's own arithmetic (the comparison itself is a benchmark: it needs vLLM installed)."""

from __future__ import annotations

from benchmarks.vllm_compare import DOCS, last_error, prompts, summarise, token_agreement


def test_token_agreement_counts_up_to_the_first_difference() -> None:
    assert token_agreement([1, 2, 3], [1, 2, 3]) == 1.0
    assert token_agreement([1, 2, 3, 4], [1, 2, 9, 4]) == 0.5  # the same again after a difference does not count
    assert token_agreement([1, 2], [1, 2, 3, 4]) == 0.5
    assert token_agreement([], []) == 1.0 and token_agreement([5], []) == 0.0


def test_twenty_prompts_each_with_an_adapter_of_a_compiled_document() -> None:
    chosen = prompts()
    assert len(chosen) == 20 and len({p.text for p in chosen}) == 20
    assert {p.adapter for p in chosen} == set(DOCS)


def test_summary_rows_split_base_and_adapter_replies() -> None:
    results = [
        {"prompt": "q", "adapter": "", "loracle": "a", "vllm": "a", "same": True, "token_agreement": 1.0},
        {"prompt": "q", "adapter": "d", "loracle": "b", "vllm": "c", "same": False, "token_agreement": 0.25},
    ]
    values = {r["metric"]: r["value"] for r in summarise(results)}
    assert values["exact match, no adapter"] == 1.0 and values["exact match, with an adapter"] == 0.0
    assert values["token agreement, with an adapter"] == 0.25
    assert values["adapters change loracle's reply"] == 1.0


def test_the_reason_is_the_last_error_line_of_the_log() -> None:
    log = "INFO starting\nWARNING slow\nRuntimeError: first\nImportError: libnuma.so.1: cannot open\nINFO bye\n"
    assert last_error(log) == "ImportError: libnuma.so.1: cannot open"
    assert last_error("all fine\n") == ""
