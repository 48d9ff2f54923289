"""Decoding under a JSON schema: even a random model's reply parses and validates, for every caller's shape."""

from __future__ import annotations

import json
from typing import Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field

from loracle.learners.playbook.book import Patch
from loracle.llm import LLM, LocalBackend
from loracle.llm.schema import decoding_schema
from loracle.model import GenerationConfig, stream_chat
from loracle.model.constrain import JSONConstraint
from loracle.model.json_strings import json_safe_strings, string_pattern
from loracle.model.loader import LoadedModel
from tests.conftest import build_tiny_model, build_tiny_tokenizer


class Item(BaseModel):
    kind: Literal["fact", "rule"]
    text: str
    score: int = 0


class Report(BaseModel):
    title: str
    items: list[Item] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    ok: bool = False


def _random_model(lm: LoadedModel, seed: int) -> LoadedModel:
    model = build_tiny_model(len(lm.tokenizer), seed=seed)
    return LoadedModel(model, lm.tokenizer, "random", "memory", lm.fingerprint)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("temperature", [0.0, 1.5])
def test_a_random_model_writes_schema_valid_json(tiny_lm: LoadedModel, one_thread, seed: int, temperature: float):
    # small bounds, so the longest reply the schema allows fits the budget: every reply must end by itself
    schema = decoding_schema(Report, max_items=2, max_chars=6)
    config = GenerationConfig(max_new_tokens=200, temperature=temperature, seed=seed, json_schema=schema)
    stream = stream_chat(_random_model(tiny_lm, seed), [{"role": "user", "content": "Report."}], config)
    text = stream.text()
    assert stream.stats.stopped, text  # ended by the stop token, which only a whole document allows
    report = Report.model_validate_json(text)
    assert len(report.items) <= 2 and all(len(tag) <= 6 for tag in report.tags)
    assert all(abs(item.score) <= 10**9 for item in report.items)
    assert set(json.loads(text)) == {"title", "items", "tags", "ok"}  # every field written


def test_unconstrained_the_same_random_model_does_not_write_json(tiny_lm: LoadedModel, one_thread) -> None:
    config = GenerationConfig(max_new_tokens=40, seed=0)
    text = stream_chat(_random_model(tiny_lm, 0), [{"role": "user", "content": "Report."}], config).text()
    with pytest.raises(ValueError):
        Report.model_validate_json(text)


def test_local_llm_returns_the_callers_model_without_repair(tiny_lm: LoadedModel, one_thread) -> None:
    llm = LLM(LocalBackend(lm=_random_model(tiny_lm, 1)))
    patch = llm.complete_json([{"role": "user", "content": "Edit."}], Patch, max_tokens=300, max_items=2, max_chars=5)
    assert isinstance(patch, Patch) and len(patch.operations) <= 2
    assert all(op.op in ("add", "update", "remove") and len(op.text) <= 5 for op in patch.operations)
    assert llm.calls == 1 and llm.retries == 0


def test_a_budget_too_small_for_the_document_is_a_clear_error(tiny_lm: LoadedModel, one_thread) -> None:
    from loracle.errors import LoracleError

    llm = LLM(LocalBackend(lm=_random_model(tiny_lm, 2)))
    with pytest.raises(LoracleError, match="Report JSON did not finish within 3 tokens"):
        llm.complete_json([{"role": "user", "content": "Report."}], Report, max_tokens=3)


def test_decoding_schema_bounds_lists_and_strings_and_requires_every_field() -> None:
    schema = decoding_schema(Patch, max_items=3, max_chars=40)
    assert schema["properties"]["operations"]["maxItems"] == 3
    op = schema["$defs"]["PatchOp"]
    assert op["required"] == ["op", "id", "section", "text"] and op["additionalProperties"] is False
    assert op["properties"]["text"]["pattern"].endswith("{0,40}$")
    assert "pattern" not in op["properties"]["op"]  # an enum needs no bound
    assert "maxItems" not in Patch.model_json_schema()["properties"]["operations"]  # the model is untouched


def test_a_token_the_grammar_forbids_is_refused(tiny_lm: LoadedModel) -> None:
    constraint = JSONConstraint(tiny_lm.tokenizer, len(tiny_lm.tokenizer), decoding_schema(Report))
    letter = tiny_lm.tokenizer.encode("a", add_special_tokens=False)[0]
    with pytest.raises(ValueError, match="not allowed"):
        constraint.accept(letter)  # a JSON object starts with "{"


def test_without_xgrammar_a_structured_reply_is_one_clear_error(tiny_lm: LoadedModel, monkeypatch) -> None:
    import sys

    from loracle.errors import LoracleError

    monkeypatch.setitem(sys.modules, "xgrammar", None)  # import xgrammar now raises ImportError
    monkeypatch.delitem(sys.modules, "loracle.model.constrain")
    config = GenerationConfig(max_new_tokens=5, json_schema=decoding_schema(Report))
    with pytest.raises(LoracleError, match="structured output needs xgrammar"):
        stream_chat(tiny_lm, [{"role": "user", "content": "Report."}], config).text()


@pytest.mark.parametrize("seed", range(4))
def test_length_bounded_strings_are_json_strings(tiny_lm: LoadedModel, one_thread, seed: int) -> None:
    # xgrammar's rule for minLength / maxLength lets raw control characters into the string: not JSON
    schema = {
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": 6},
        "minItems": 4,
        "maxItems": 4,
    }
    config = GenerationConfig(max_new_tokens=200, temperature=1.5, seed=seed, json_schema=schema)
    stream = stream_chat(_random_model(tiny_lm, seed), [{"role": "user", "content": "List."}], config)
    text = stream.text()
    assert stream.stats.stopped, text
    jsonschema.validate(json.loads(text), schema)


def test_json_safe_strings_rewrites_only_bare_length_bounds() -> None:
    schema = {
        "properties": {
            "a": {"type": "string", "maxLength": 3},
            "b": {"type": "string", "maxLength": 3, "pattern": "^x+$"},
            "c": {"type": "string", "minLength": "2"},
        }
    }
    safe = json_safe_strings(schema)
    assert safe["properties"]["a"] == {"type": "string", "pattern": string_pattern(0, 3)}
    assert safe["properties"]["b"] == schema["properties"]["b"]  # the caller's own pattern stays
    assert safe["properties"]["c"] == {"type": "string", "minLength": "2"}  # not a length: xgrammar names it
    assert schema["properties"]["a"] == {"type": "string", "maxLength": 3}  # the caller's schema is untouched


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ({"type": "objectx"}, 'JSON schema: Unsupported type "objectx"'),
        ({"type": "string", "pattern": "(("}, "JSON schema: Regex parsing error at position 3"),
    ],
)
def test_a_schema_xgrammar_refuses_is_one_schema_error_line(tiny_lm: LoadedModel, schema: dict, says: str) -> None:
    from loracle.errors import SchemaError
    from loracle.model.generate import check_json_schema

    with pytest.raises(SchemaError) as caught:
        check_json_schema(tiny_lm, schema)
    assert str(caught.value).startswith(says) and "\n" not in str(caught.value) and ".cc:" not in str(caught.value)


def test_the_closing_ends_a_string_even_where_brackets_are_tokens(tiny_lm: LoadedModel, one_thread) -> None:
    # a vocabulary with "]]" and "}}" tokens (the embedded model's has them): inside a string they are only
    # more text, so a closing that took the longest bracket token looped there until the budget ran out
    tokenizer = build_tiny_tokenizer((']] }} ]} ]]] }}} "]} "}]} [[x]] {{y}}',) * 50)
    assert {"]]", "}}"} <= set(tokenizer.get_vocab())
    lm = LoadedModel(build_tiny_model(len(tokenizer)), tokenizer, "random", "memory", tiny_lm.fingerprint)
    schema = decoding_schema(Patch, max_items=8, max_chars=200)
    letter = tokenizer.encode("a", add_special_tokens=False)[0]
    config = GenerationConfig(max_new_tokens=100, json_schema=schema, logit_bias={letter: 100.0})
    stream = stream_chat(lm, [{"role": "user", "content": "Edit."}], config)
    text = stream.text()
    assert stream.stats.stopped and stream.stats.new_tokens <= 100, text
    assert Patch.model_validate_json(text).operations


@pytest.mark.parametrize("budget", [24, 60, 150])
def test_a_model_that_repeats_itself_still_closes_its_json_within_the_budget(
    tiny_lm: LoadedModel, one_thread, budget: int
) -> None:
    # the curator's bounds (8 operations of 200 characters) hold far more than the budget: a model that
    # loops on one letter would be cut off inside a string unless the decoder closes the document in time
    schema = decoding_schema(Patch, max_items=8, max_chars=200)
    letter = tiny_lm.tokenizer.encode("a", add_special_tokens=False)[0]
    config = GenerationConfig(max_new_tokens=budget, json_schema=schema, logit_bias={letter: 100.0})
    stream = stream_chat(_random_model(tiny_lm, 0), [{"role": "user", "content": "Edit."}], config)
    text = stream.text()
    assert stream.stats.stopped and stream.stats.new_tokens <= budget, text
    patch = Patch.model_validate_json(text)
    assert all(len(op.text) <= 200 for op in patch.operations)
    if budget >= 150:  # room for one operation of the tiny tokenizer's one-letter tokens: the loop was written
        assert "aaaa" in text
