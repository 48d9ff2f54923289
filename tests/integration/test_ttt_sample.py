"""ttt on the real embedded model: after learning the bundled sample document, the adapter recites it
when asked about it, and answers that the base model cannot give come from that recitation."""

from __future__ import annotations

from pathlib import Path

import pytest

from loracle.eval.qa import load_qa
from loracle.eval.scoring import is_correct
from loracle.learners.ttt.config import TTTConfig
from loracle.learners.ttt.learner import TTTLearner
from loracle.learners.ttt.selfstudy import content_words, recall_messages
from loracle.model import GenerationConfig, generate_chat, question_messages
from loracle.model.loader import LoadedModel
from loracle.sources import read_document

pytestmark = pytest.mark.integration


def test_ttt_recites_the_sample_and_answers_from_it(embedded_lm: LoadedModel, sample_dir: Path) -> None:
    doc = read_document(sample_dir / "kestrel-valley-observatory.md")
    items = load_qa(sample_dir / "questions.jsonl")[:3]
    learner = TTTLearner(embedded_lm, TTTConfig(max_new_tokens=32))
    report = learner.learn([doc])
    assert report.details["examples"] > len(items)  # self-study wrote cues of its own
    assert report.details["loss_last"] < 0.5 * report.details["loss_first"]

    with learner.merged(learner.adapters[doc.id]):
        recited = generate_chat(embedded_lm, recall_messages(items[0].question), GenerationConfig(96))
    words = content_words(recited)
    assert words and len(words & content_words(doc.text)) / len(words) > 0.8, recited

    config = GenerationConfig(32)
    base = [is_correct(generate_chat(embedded_lm, question_messages(i.question), config), i.answers) for i in items]
    learned = [is_correct(learner.answer(i.question).text, i.answers) for i in items]
    assert sum(learned) > sum(base), f"base {base}, learned {learned}"
