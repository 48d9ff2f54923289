"""The memory learner on the tiny model: chunks into prefixes, routed answers, checkpoints, and compiled prefix
adapters that `ask --kb` (KnowledgeBaseAnswerer) routes to and answers with exactly as the learner does."""

from __future__ import annotations

from pathlib import Path

import pytest

from loracle.asking import KnowledgeBaseAnswerer
from loracle.documents import Document
from loracle.errors import AdapterError, LoracleError
from loracle.learners.memory.learner import MemoryLearner
from loracle.model import GenerationConfig, apply_adapters, generate_chat, question_messages
from loracle.model.prefix import is_prefix_adapter, join_prefixes
from loracle.pipeline import wiki_source
from tests.compiled_kb import KESTREL, seeded_lm, strong_learner, write_adapter, write_memory_kb, write_page

pytestmark = pytest.mark.usefixtures("one_thread")
FOUNDER = "Who founded the Kestrel Valley Observatory?"
ELSEWHERE = "What is the capital of France?"
LONG = Document("kestrel", "Kestrel", KESTREL.text + " " + KESTREL.text.replace("1987", "1991"))


def base_reply(lm, question: str, max_new_tokens: int = 6) -> str:
    return generate_chat(lm, question_messages(question), GenerationConfig(max_new_tokens))


def test_chunks_become_prefixes_and_questions_are_answered_from_the_routed_one(tmp_path: Path):
    lm = seeded_lm()
    learner = strong_learner(lm)
    report = learner.learn([LONG])
    assert report.details["chunks"] == len(learner.chunks) > 1 and report.bytes_on_disk > 0
    assert all(c.kv.shape[3] == 3 and c.tokens <= 8 for c in learner.chunks)
    answer = learner.answer(FOUNDER)
    assert answer.citations and answer.citations[0].doc_id == "kestrel"
    assert answer.text != base_reply(lm, FOUNDER)
    elsewhere = learner.answer(ELSEWHERE)  # about nothing learned: the base model alone
    assert elsewhere.citations == [] and elsewhere.text == base_reply(lm, ELSEWHERE)
    learner.save(tmp_path / "ck")
    again = strong_learner(seeded_lm())
    again.load(tmp_path / "ck")
    assert [c.text for c in again.chunks] == [c.text for c in learner.chunks]
    assert again.answer(FOUNDER).text == answer.text


def test_compiled_prefix_adapters_answer_through_ask_kb_as_the_learner_does(tmp_path: Path):
    lm = seeded_lm()
    kb = write_memory_kb(tmp_path / "kb", lm)
    folder = tmp_path / "kb" / "adapters" / "kestrel-valley-observatory"
    assert is_prefix_adapter(folder)
    document = wiki_source(tmp_path / "kb").read(tmp_path / "kb" / "wiki" / "kestrel-valley-observatory.md")
    chunks = strong_learner(lm).chunks_of(document)
    assert len(chunks) > 1  # the adapter holds every chunk's prefix, one after another
    prefix = join_prefixes(lm.model, [c.kv for c in chunks])
    assert prefix is not None
    written = prefix.half().float()  # the adapter holds its cache in float16
    expected = generate_chat(lm, question_messages(FOUNDER), GenerationConfig(6), prefix=written)
    answer = kb.ask(FOUNDER, max_new_tokens=6)
    assert [d.id for d in answer.documents] == ["kestrel-valley-observatory"]
    assert answer.plan.prefixes == ("kestrel-valley-observatory",) and answer.plan.spec == ()
    assert answer.text == expected != base_reply(lm, FOUNDER)
    assert kb.ask(ELSEWHERE, max_new_tokens=6).text == base_reply(lm, ELSEWHERE)
    kb.close()


def test_prefix_and_lora_adapters_answer_side_by_side(tmp_path: Path):
    lm = seeded_lm()
    root = tmp_path / "kb"
    write_memory_kb(root, lm)
    marrow = KESTREL.__class__("marrow", "Ilse Marrow", "Ilse Marrow built a telescope named Harrow.", ())
    write_page(root, marrow)
    write_adapter(root, lm, marrow, seed=4)  # a LoRA adapter beside the prefixes
    with KnowledgeBaseAnswerer(lm, root) as answerer:
        lora = answerer.ask("Which telescope did Ilse Marrow build?", GenerationConfig(6))
        assert lora.plan.spec == (("marrow", 1.0),) and lora.plan.prefixes == ()
        prefix = answerer.ask(FOUNDER, GenerationConfig(6))
        assert prefix.plan.prefixes == ("kestrel-valley-observatory",) and prefix.plan.spec == ()
        assert prefix.text != base_reply(lm, FOUNDER)


def test_a_prefix_adapter_of_another_model_is_refused_by_name(tmp_path: Path):
    kb = write_memory_kb(tmp_path / "kb", seeded_lm())
    other = seeded_lm(seed=7)
    with KnowledgeBaseAnswerer(other, kb.paths) as answerer, pytest.raises(AdapterError, match="another base model"):
        answerer.ask(FOUNDER, GenerationConfig(6))


def test_a_prefix_adapter_given_where_only_lora_goes_is_refused_in_one_line(tmp_path: Path):
    lm = seeded_lm()
    write_memory_kb(tmp_path / "kb", lm)
    with pytest.raises(
        AdapterError, match=r"not a LoRA adapter config \(a prefix adapter: this takes LoRA adapters only\)"
    ):
        apply_adapters(lm, [tmp_path / "kb" / "adapters" / KESTREL.id])


def test_without_a_network_for_the_model_the_learner_says_how_to_get_one():
    with pytest.raises(LoracleError, match="no memory-token network ships for tiny; give one with -o checkpoint="):
        MemoryLearner(seeded_lm())
