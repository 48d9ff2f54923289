"""The routed answer path on the tiny model: a tiny knowledge base whose adapters are written directly
(tests/compiled_kb.py), routed, applied and answered through KnowledgeBaseAnswerer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loracle.adapters.router import AdapterRouter
from loracle.adapters.store import LocalAdapterStore
from loracle.asking import KnowledgeBaseAnswerer
from loracle.config import AskConfig
from loracle.demo import ADAPTERS, CLOSED, IN_PROMPT, answer_three_ways
from loracle.errors import AdapterError, LoracleError
from loracle.eval.qa import QAItem
from loracle.knowledge_base import KnowledgeBase
from loracle.model import GenerationConfig, apply_adapters, generate_chat, question_messages
from loracle.model.loader import LoadedModel
from tests.compiled_kb import CORRA, KESTREL, Page, seeded_lm, write_adapter, write_compiled_kb, write_page
from tests.concepts import ConceptEmbedder

pytestmark = pytest.mark.usefixtures("one_thread")
FOUNDER = "Who founded the Kestrel Valley Observatory?"
POWER = "What powers the Varn station?"
ELSEWHERE = "What is the capital of France?"
SHORT = GenerationConfig(max_new_tokens=8)


@pytest.fixture
def lm() -> LoadedModel:
    return seeded_lm()


def direct(folders: list[Path], weights: list[float], question: str) -> str:
    """The greedy answer with these adapters applied by plain PEFT to a fresh copy of the model."""
    adapted = apply_adapters(seeded_lm(), folders, weights) if folders else seeded_lm()
    return generate_chat(adapted, question_messages(question), SHORT)


def test_a_question_goes_to_the_adapter_that_answers_it_or_to_none(tmp_path: Path, lm: LoadedModel) -> None:
    kb = write_compiled_kb(tmp_path / "kb", lm)
    router = AdapterRouter(LocalAdapterStore(kb / "adapters"), AskConfig())
    route = router.route(FOUNDER)
    assert [a.adapter_id for a in route.adapters] == ["kestrel-valley-observatory"]
    chosen = route.adapters[0]
    assert chosen.title == "Kestrel Valley Observatory" and chosen.document_id == "kestrel-valley-observatory"
    assert chosen.coverage == 1.0 and chosen.score > 0 and chosen.weight == 1.0
    assert [a.adapter_id for a in router.route(POWER).adapters] == ["corra-river"]
    assert router.route(ELSEWHERE).adapters == ()


def test_top_k_coverage_and_weight_come_from_the_config(tmp_path: Path, lm: LoadedModel) -> None:
    kb = write_compiled_kb(tmp_path / "kb", lm)
    store = LocalAdapterStore(kb / "adapters")
    both = "Who founded the observatory, and what powers the station?"  # half its words each
    assert AdapterRouter(store, AskConfig(route_top_k=2)).route(both).adapters != ()
    strict = AdapterRouter(store, AskConfig(route_top_k=2, min_coverage=0.8)).route(both)
    assert strict.adapters == ()
    stacked = AdapterRouter(store, AskConfig(route_top_k=2, min_coverage=0.3, stack_weight=0.5)).route(both)
    assert sorted(a.adapter_id for a in stacked.adapters) == ["corra-river", "kestrel-valley-observatory"]
    assert {a.weight for a in stacked.adapters} == {0.5}
    assert stacked.spec == tuple((a.adapter_id, 0.5) for a in stacked.adapters)


def test_a_question_put_in_other_words_goes_to_the_adapter_whose_question_it_is_close_to(
    tmp_path: Path, lm: LoadedModel
) -> None:
    kb = write_compiled_kb(tmp_path / "kb", lm)
    store = LocalAdapterStore(kb / "adapters")
    reworded = "Which stream water runs the Varn machines?"  # one word in three of the keys'
    assert AdapterRouter(store, AskConfig(min_similarity=None)).route(reworded).adapters == ()
    concepts = AskConfig(min_similarity=0.35)
    routed = AdapterRouter(store, concepts, embedder=ConceptEmbedder()).route(reworded).adapters
    assert [a.adapter_id for a in routed] == ["corra-river"] and routed[0].similarity >= 0.35
    unrelated = "Name one composer born in Vienna."
    assert AdapterRouter(store, concepts, embedder=ConceptEmbedder()).route(unrelated).adapters == ()


def test_the_router_reads_the_store_again_when_it_changes(tmp_path: Path, lm: LoadedModel) -> None:
    kb = write_compiled_kb(tmp_path / "kb", lm, pages=(KESTREL,))
    router = AdapterRouter(LocalAdapterStore(kb / "adapters"), AskConfig())
    assert router.route(POWER).adapters == ()
    write_page(kb, CORRA)
    write_adapter(kb, lm, CORRA, seed=5)
    assert [a.adapter_id for a in router.route(POWER).adapters] == ["corra-river"]


def test_an_adapter_without_routing_keys_is_routed_by_its_title_and_document(tmp_path: Path, lm: LoadedModel) -> None:
    older = Page("marrow", "Ilse Marrow", "Ilse Marrow is an astronomer who built a telescope named Harrow.", None)
    kb = write_compiled_kb(tmp_path / "kb", lm, pages=(older, CORRA))
    assert "routing_keys" not in json.loads((kb / "adapters" / "marrow" / "manifest.json").read_text())
    answerer = KnowledgeBaseAnswerer(lm, kb)
    assert [a.adapter_id for a in answerer.plan("Which telescope did the astronomer build?").route.adapters] == [
        "marrow"
    ]  # words only its document holds
    assert [a.adapter_id for a in answerer.plan("Who is Ilse Marrow?").route.adapters] == ["marrow"]


def test_the_answer_is_one_decode_with_the_routed_adapter_applied(tmp_path: Path, lm: LoadedModel) -> None:
    kb = write_compiled_kb(tmp_path / "kb", lm)
    expected = direct([kb / "adapters" / "kestrel-valley-observatory"], [1.0], FOUNDER)
    assert expected != direct([], [], FOUNDER)  # the adapter changes the reply
    answerer = KnowledgeBaseAnswerer(lm, kb)
    answer = answerer.ask(FOUNDER, SHORT)
    assert answer.text == expected
    assert [(d.id, d.title, d.page, d.path) for d in answer.documents] == [
        ("kestrel-valley-observatory", "Kestrel Valley Observatory", "kestrel-valley-observatory.md",
         "wiki/kestrel-valley-observatory.md")
    ]  # fmt: skip
    assert answer.plan.sources_line() == "from: Kestrel Valley Observatory (kestrel-valley-observatory)"
    assert answer.warnings == []
    # about nothing compiled: the base model alone, and says so
    elsewhere = answerer.ask(ELSEWHERE, SHORT)
    assert elsewhere.text == direct([], [], ELSEWHERE)
    assert elsewhere.documents == [] and "base model" in elsewhere.plan.sources_line()


def test_routed_adapters_are_stacked_with_their_weights(tmp_path: Path, lm: LoadedModel) -> None:
    kb = write_compiled_kb(tmp_path / "kb", lm)
    both = "Who founded the observatory, and what powers the station?"
    config = AskConfig(route_top_k=2, min_coverage=0.3, stack_weight=0.7)
    answerer = KnowledgeBaseAnswerer(lm, kb, config=config)
    plan = answerer.plan(both)
    folders = [kb / "adapters" / adapter_id for adapter_id, _ in plan.spec]
    expected = direct(folders, [0.7, 0.7], both)
    assert expected != direct(folders[:1], [0.7], both)
    assert answerer.ask(both, SHORT).text == expected
    assert len(answerer.ask(both, SHORT).documents) == 2


def test_a_conversation_is_routed_on_its_last_user_message(tmp_path: Path, lm: LoadedModel) -> None:
    kb = write_compiled_kb(tmp_path / "kb", lm)
    answerer = KnowledgeBaseAnswerer(lm, kb)
    conversation = [
        {"role": "user", "content": FOUNDER},
        {"role": "assistant", "content": "Ilse Marrow."},
        {"role": "user", "content": POWER},
    ]
    plan = answerer.plan(conversation)
    assert [a.adapter_id for a in plan.route.adapters] == ["corra-river"]
    assert plan.messages == conversation  # the whole conversation is the prompt


def test_a_document_changed_since_compiling_still_answers_with_a_warning(tmp_path: Path, lm: LoadedModel) -> None:
    kb = write_compiled_kb(tmp_path / "kb", lm)
    page = kb / "wiki" / "kestrel-valley-observatory.md"
    page.write_text(page.read_text() + "It closed in 2020.\n", encoding="utf-8")
    with KnowledgeBaseAnswerer(lm, kb) as answerer:
        answer = answerer.ask(FOUNDER, SHORT)
    assert answer.text and [d.adapter for d in answer.documents] == ["kestrel-valley-observatory"]
    assert len(answer.warnings) == 1
    assert "kestrel-valley-observatory is stale" in answer.warnings[0] and "loracle compile" in answer.warnings[0]
    page.unlink()
    gone = KnowledgeBaseAnswerer(lm, kb).ask(FOUNDER, SHORT)
    assert "is gone from wiki/" in gone.warnings[0]


def test_a_knowledge_base_without_adapters_says_to_compile(tmp_path: Path, lm: LoadedModel) -> None:
    kb = tmp_path / "kb"
    write_page(kb, KESTREL)
    (kb / "loracle.toml").write_text("")
    with pytest.raises(LoracleError, match=r"no compiled adapters.*run `loracle compile"):
        KnowledgeBaseAnswerer(lm, kb).ask(FOUNDER)


def test_adapters_of_another_base_model_are_refused_by_name(tmp_path: Path, lm: LoadedModel) -> None:
    kb = write_compiled_kb(tmp_path / "kb", lm, pages=(KESTREL,))
    other_lm = seeded_lm(seed=7)
    with pytest.raises(AdapterError, match=r"adapters/kestrel-valley-observatory: made for another base model"):
        KnowledgeBaseAnswerer(other_lm, kb).ask(FOUNDER)
    # beside adapters it can use, one made for another model is named in a warning and never applied
    write_page(kb, CORRA)
    write_adapter(kb, other_lm, CORRA, seed=2)
    answer = KnowledgeBaseAnswerer(lm, kb).ask(POWER, SHORT)
    assert answer.documents == []
    assert any("adapter corra-river not used: made for another base model" in w for w in answer.warnings)


def test_answers_decoded_step_by_step_in_turn_keep_their_own_adapters(tmp_path: Path, lm: LoadedModel) -> None:
    """Streams advanced in turn, one piece each (as the server's worker, or threads sharing the pool, run them),
    each with its own adapters active at every step."""
    kb = write_compiled_kb(tmp_path / "kb", lm)
    with KnowledgeBaseAnswerer(lm, kb) as answerer:
        questions = [FOUNDER, POWER, ELSEWHERE, FOUNDER]
        alone = [answerer.ask(q, SHORT).text for q in questions]
        streams = [iter(answerer.stream(q, SHORT)) for q in questions]
        got = [""] * len(streams)
        running = set(range(len(streams)))
        while running:
            for i in sorted(running):
                piece = next(streams[i], None)
                if piece is None:
                    running.discard(i)
                else:
                    got[i] += piece
    assert [text.strip() for text in got] == alone
    assert len(set(alone)) == 3


def test_the_python_api_asks_through_the_same_path(tmp_path: Path, lm: LoadedModel) -> None:
    kb = write_compiled_kb(tmp_path / "kb", lm)
    expected = direct([kb / "adapters" / "kestrel-valley-observatory"], [1.0], FOUNDER)
    answer = KnowledgeBase(kb, lm=lm).ask(FOUNDER, max_new_tokens=8)
    assert answer.text == expected
    assert [d.id for d in answer.documents] == ["kestrel-valley-observatory"]


def test_the_demo_answers_closed_book_from_the_adapters_and_with_the_document(tmp_path: Path, lm: LoadedModel) -> None:
    kb = write_compiled_kb(tmp_path / "kb", lm)
    questions = [QAItem(("k.md",), FOUNDER, ("Ilse Marrow",)), QAItem(("k.md",), ELSEWHERE, ("Paris",))]
    answers, sources = answer_three_ways(lm, kb, questions, {"k.md": KESTREL.text}, 8)
    assert answers[ADAPTERS] == [direct([kb / "adapters" / KESTREL.id], [1.0], FOUNDER), direct([], [], ELSEWHERE)]
    assert answers[CLOSED] == [direct([], [], FOUNDER), direct([], [], ELSEWHERE)]
    in_prompt = generate_chat(seeded_lm(), question_messages(FOUNDER, KESTREL.text), SHORT)
    assert answers[IN_PROMPT][0] == in_prompt
    assert sources == [f"from: {KESTREL.title} ({KESTREL.id})", "from: the base model (no adapter matched)"]
    assert not any(hasattr(m, "base_layer") for m in lm.model.modules())  # the adapters are taken out again


def test_adapters_that_are_never_applied_are_named_in_one_warning(tmp_path: Path, lm: LoadedModel) -> None:
    kb = write_compiled_kb(tmp_path / "kb", lm, pages=(KESTREL,))
    for name in ("broken-a", "broken-b"):
        folder = kb / "adapters" / name
        folder.mkdir()
        (folder / "adapter_config.json").write_text("{}")
        (folder / "adapter_model.safetensors").write_bytes(b"not safetensors")
        (folder / "manifest.json").write_text("{}")
    with KnowledgeBaseAnswerer(lm, kb) as answerer:
        warnings = answerer.ask(FOUNDER, SHORT).warnings
    assert len(warnings) == 1 and "unreadable" in warnings[0]
    assert warnings[0].startswith("2 adapters not used (broken-a, broken-b); broken-a: ")
