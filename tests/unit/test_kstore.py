"""The kstore learner on the tiny model: the store is built, consulted (or not, by the question gate), saved
and loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from loracle.documents import Document
from loracle.errors import LoracleError
from loracle.learners import create_learner
from loracle.learners.kstore.config import KStoreConfig
from loracle.learners.kstore.learner import KStoreLearner
from loracle.learners.playbook.learner import PlaybookLearner

DOCS = [
    Document.from_text("The Kestrel Valley Observatory was founded by Ilse Marrow in 1987.", "Kestrel"),
    Document.from_text("Paris is the capital of France. The river Corra powers the station.", "Corra"),
]


def test_learn_stores_one_entry_per_predicted_token(tiny_lm) -> None:
    store = KStoreLearner(tiny_lm, KStoreConfig(skip=2))
    report = store.learn(DOCS)
    lengths = [len(tiny_lm.tokenizer.encode(f"{d.title}\n\n{d.text}")) for d in DOCS]
    assert len(store.keys) == sum(n - 1 - 2 for n in lengths) == report.details["entries"]
    assert store.keys.shape[1] == tiny_lm.model.config.hidden_size
    assert set(store.doc_index.tolist()) == {0, 1}
    assert int(store.segments.max()) >= 3  # sentences of both documents are told apart


def test_a_layer_past_the_models_depth_is_its_last_layer(tiny_lm) -> None:
    deep, last = KStoreLearner(tiny_lm, KStoreConfig(layer=99)), KStoreLearner(tiny_lm, KStoreConfig(layer=-1))
    deep.learn(DOCS)
    last.learn(DOCS)
    assert torch.equal(deep.keys, last.keys)


def test_with_full_weight_every_token_comes_from_the_store(tiny_lm) -> None:
    """lam=1 without the confidence or question gates: the reply is made only of next-tokens the documents contain."""
    config = KStoreConfig(
        lam=1.0, threshold=-1.0, max_confidence=1.01, min_question_match=-1.0, max_new_tokens=8, scope=0
    )
    store = KStoreLearner(tiny_lm, config)
    store.learn(DOCS[:1])
    reply_ids, _ = store.generate_ids("Who founded the observatory?")
    assert len(reply_ids) == 8 and set(reply_ids) <= set(store.values.tolist())
    answer = store.answer("Who founded the observatory?")
    assert answer.citations and answer.citations[0].doc_id == DOCS[0].id


def test_scope_keeps_the_sentences_closest_to_the_question(tiny_lm) -> None:
    store = KStoreLearner(tiny_lm, KStoreConfig(scope=1))
    store.learn(DOCS)
    chosen, match = store._scope(store._normalized_keys(), "Paris is the capital of France.")
    assert 0 < len(chosen) < len(store.keys)
    assert len(set(store.segments[chosen].tolist())) == 1
    assert match == pytest.approx(
        float(store.question_match(store._normalized_keys(), "Paris is the capital of France.").max())
    )


def test_a_learned_sentence_matches_better_than_unrelated_text(tiny_lm) -> None:
    store = KStoreLearner(tiny_lm)
    store.learn(DOCS)
    keys = store._normalized_keys()
    scores = store.question_match(keys, "The Kestrel Valley Observatory was founded by Ilse Marrow")
    assert len(scores) == int(store.segments.max()) + 1
    assert float(scores.max()) > float(store.question_match(keys, "安全 日本語 中文 检索 テスト").max())


def test_a_question_below_the_match_gate_gets_the_base_models_reply(tiny_lm) -> None:
    """With the store at full weight every reply token comes from it; a gate just above the question's match
    shuts it out entirely (the base model's reply, no citations), and a gate at the match lets it back in."""
    question = "Who founded the observatory?"
    settings = dict(lam=1.0, threshold=-1.0, max_confidence=1.01, max_new_tokens=8, scope=0)
    base = KStoreLearner(tiny_lm, KStoreConfig(**settings)).generate_ids(question)[0]  # an empty store: the base model
    open_store = KStoreLearner(tiny_lm, KStoreConfig(**settings, min_question_match=-1.0))
    open_store.learn(DOCS[:1])
    consulted, used = open_store.generate_ids(question)
    assert consulted != base and used  # the store changes this reply when it is consulted
    match = float(open_store.question_match(open_store._normalized_keys(), question).max())

    shut = KStoreLearner(tiny_lm, KStoreConfig(**settings, min_question_match=match + 1e-4))
    shut.learn(DOCS[:1])
    assert shut.generate_ids(question) == (base, {})
    assert shut.answer(question).citations == []

    at_gate = KStoreLearner(tiny_lm, KStoreConfig(**settings, min_question_match=match - 1e-4))
    at_gate.learn(DOCS[:1])
    assert at_gate.generate_ids(question)[0] == consulted


def test_an_empty_store_answers_like_the_base_model(tiny_lm) -> None:
    store = KStoreLearner(tiny_lm, KStoreConfig(max_new_tokens=4))
    assert store.answer("Who?").citations == []


def test_save_load_round_trip_and_refusals(tiny_lm, tmp_path: Path) -> None:
    store = create_learner("kstore", tiny_lm, {"max_new_tokens": 6, "k": 4})
    store.learn(DOCS)
    expected = store.answer("Who founded the observatory?").text
    store.save(tmp_path / "ks")
    fresh = KStoreLearner(tiny_lm)
    fresh.load(tmp_path / "ks")
    assert torch.equal(fresh.keys, store.keys) and torch.equal(fresh.segments, store.segments)
    assert fresh.config == store.config
    assert fresh.answer("Who founded the observatory?").text == expected

    other_base = type(tiny_lm)(tiny_lm.model, tiny_lm.tokenizer, "other", "memory", "0" * 16)
    with pytest.raises(LoracleError, match="another base model"):
        KStoreLearner(other_base).load(tmp_path / "ks")
    with pytest.raises(LoracleError, match="not 'playbook'"):
        PlaybookLearner(tiny_lm, llm=object()).load(tmp_path / "ks")  # type: ignore[arg-type]
    store.reset()
    assert len(store.keys) == 0


def test_unknown_setting_is_a_clear_error(tiny_lm) -> None:
    with pytest.raises(LoracleError, match=r"learner 'kstore' has no option 'nearest' \(its options: layer, k, "):
        create_learner("kstore", tiny_lm, {"nearest": 3})
