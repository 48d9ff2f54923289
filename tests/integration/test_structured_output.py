"""One real structured call on the embedded model: the playbook curator's patch, decoded under its schema."""

from __future__ import annotations

import pytest

from loracle.learners.playbook.book import SECTIONS
from loracle.learners.playbook.learner import PlaybookLearner
from loracle.llm import LLM, LocalBackend
from loracle.model import LoadedModel

pytestmark = pytest.mark.integration

LESSONS = [
    "The Vellmar Bridge crosses the river Dunmere.",
    "The Vellmar Bridge was designed by Tamsin Quell.",
]


def test_the_curator_patch_is_schema_valid_and_applies(embedded_lm: LoadedModel) -> None:
    llm = LLM(LocalBackend(lm=embedded_lm))
    learner = PlaybookLearner(embedded_lm, llm=llm)
    patch = llm.ask_json(learner.curate_request(LESSONS))
    assert llm.calls == 1 and llm.retries == 0  # valid as decoded: no repair, no second try
    assert 1 <= len(patch.operations) <= len(LESSONS)
    assert all(len(op.id) <= 8 and op.section in SECTIONS for op in patch.operations)
    applied = learner.playbook.apply(patch)
    assert applied and learner.playbook.bullets  # a usable patch, not just a parseable one
