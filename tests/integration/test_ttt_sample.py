"""ttt on the real embedded model: after learning the bundled sample document, its adapter answers questions
about it the base model cannot, in a short reply, and leaves a general question's answer alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from loracle.eval.qa import load_qa
from loracle.eval.scoring import is_correct
from loracle.learners.ttt.config import TTTConfig
from loracle.learners.ttt.learner import TTTLearner
from loracle.model import GenerationConfig, generate_chat, question_messages
from loracle.model.loader import LoadedModel
from loracle.sources import read_document

pytestmark = pytest.mark.integration


def test_ttt_adapter_answers_the_sample_and_leaves_general_questions_alone(
    embedded_lm: LoadedModel, sample_dir: Path
) -> None:
    doc = read_document(sample_dir / "kestrel-valley-observatory.md")
    items = load_qa(sample_dir / "questions.jsonl")[:4]
    learner = TTTLearner(embedded_lm, TTTConfig(max_new_tokens=32, general_examples=32))
    report = learner.learn([doc])
    assert report.details["examples"] > len(items)  # self-study wrote questions of its own
    assert report.details["loss_last"] < report.details["loss_first"]

    config = GenerationConfig(32)
    base = [is_correct(generate_chat(embedded_lm, question_messages(i.question), config), i.answers) for i in items]
    replies = [learner.answer(i.question) for i in items]
    learned = [is_correct(r.text, i.answers) for r, i in zip(replies, items, strict=True)]
    assert sum(learned) > sum(base), f"base {base}, learned {[r.text for r in replies]}"
    assert all(r.citations and r.citations[0].doc_id == doc.id for r in replies)

    general = "What is the capital of France?"
    assert learner.route(general) == []
    with learner.merged([doc.id]):  # even applied, the adapter leaves it alone
        assert "Paris" in generate_chat(embedded_lm, question_messages(general), config)
