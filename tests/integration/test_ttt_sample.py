"""ttt on the real embedded model: learning the bundled sample document puts its facts into the weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from loracle.eval.qa import load_qa
from loracle.learners.selfstudy import answer_ids
from loracle.learners.ttt import TTTLearner
from loracle.model import encode_chat, question_messages
from loracle.model.loader import LoadedModel
from loracle.sources import read_document

pytestmark = pytest.mark.integration


def closed_book_logprob(learner: TTTLearner, question: str, answer: str) -> float:
    """Mean log-probability of the accepted answer's tokens, asked with no document in the prompt."""
    lm = learner.lm
    prompt = encode_chat(lm.tokenizer, question_messages(question))
    target = answer_ids(lm, answer)[:-1]
    with torch.no_grad(), learner.active():
        logits = lm.model(input_ids=torch.tensor([prompt + target])).logits[0, len(prompt) - 1 : -1]
    return float(torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(target)[:, None]).mean())


def test_ttt_makes_the_sample_answers_more_likely_closed_book(embedded_lm: LoadedModel, sample_dir: Path) -> None:
    doc = read_document(sample_dir / "kestrel-valley-observatory.md")
    items = load_qa(sample_dir / "questions.jsonl")
    learner = TTTLearner(embedded_lm, max_new_tokens=32)

    def scores() -> list[float]:
        return [closed_book_logprob(learner, item.question, item.answers[0]) for item in items]

    before = scores()  # an untrained adapter is the base model (lora_B starts at zero)
    report = learner.learn([doc])
    after = scores()
    assert report.details["examples"] > len(items)  # self-study wrote questions of its own
    assert report.details["loss_last"] < report.details["loss_first"]
    improved = sum(a > b for a, b in zip(after, before, strict=True))
    assert sum(after) > sum(before) and improved > len(items) // 2, f"before {before}, after {after}"
