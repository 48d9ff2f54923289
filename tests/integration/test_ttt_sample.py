"""ttt on the real embedded model: learning the bundled sample document puts facts into the weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from loracle.eval.qa import load_qa
from loracle.eval.scoring import is_correct
from loracle.learners.ttt import TTTLearner
from loracle.model.loader import LoadedModel
from loracle.sources import read_document

pytestmark = pytest.mark.integration


def test_ttt_improves_closed_book_accuracy_on_the_sample(embedded_lm: LoadedModel, sample_dir: Path) -> None:
    doc = read_document(sample_dir / "kestrel-valley-observatory.md")
    items = load_qa(sample_dir / "questions.jsonl")
    learner = TTTLearner(embedded_lm, max_new_tokens=32)

    def correct() -> int:
        return sum(is_correct(learner.answer(item.question).text, item.answers) for item in items)

    before = correct()  # an untrained adapter is the base model (lora_B starts at zero)
    report = learner.learn([doc])
    after = correct()
    assert report.details["examples"] > len(items)  # self-study wrote questions of its own
    assert report.details["loss_last"] < report.details["loss_first"]
    assert after > before, f"closed-book {after}/{len(items)} after learning, {before}/{len(items)} before"
