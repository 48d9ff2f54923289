"""The same checks on every registered learner, parametrized from the registry (as PEFT's common tester runs
one suite over every tuner): learn, answer, save, load and answer the same; reset forgets; a bad option is
refused in one line; a checkpoint of another base model, or one recording an option the learner no longer has,
is refused; a learner that compiles documents returns a CompileReport and records its config in the manifest."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loracle.adapters.compiler import CompileReport, DocumentCompiler
from loracle.documents import Document
from loracle.errors import LoracleError
from loracle.learners import LEARNER_NAMES, create_learner, learner_config
from loracle.learners.base import Answer, Learner, LearnReport
from loracle.learners.checkpoint import META
from loracle.learners.hypernet.engine import DocToLora
from loracle.llm import LLM
from loracle.model.loader import LoadedModel, model_fingerprint
from tests.compiled_kb import strong_learner
from tests.conftest import build_tiny_model
from tests.unit.test_hypernet import make_net
from tests.unit.test_learner_context import WordHashEmbedder
from tests.unit.test_playbook import ScriptedBackend, practice

pytestmark = pytest.mark.usefixtures("one_thread")

DOCS = [
    Document.from_text(
        "The Kestrel Valley Observatory was founded by Ilse Marrow in 1987. Its telescope is the Harrow.",
        "Kestrel Valley Observatory",
        doc_id="kestrel",
    ),
    Document.from_text(
        "The Vellmar Bridge crosses the Dunmere. It was designed by Tamsin Quell in 1902.",
        "Vellmar Bridge",
        doc_id="vellmar",
    ),
]
QUESTIONS = ("Who founded the Kestrel Valley Observatory?", "Who designed the Vellmar Bridge?", "What is 2 + 2?")

#: each learner at its smallest on the tiny model, so that the suite stays fast
SMALL: dict[str, dict[str, Any]] = {
    "context": {"max_new_tokens": 6},
    "ttt": {"steps_per_doc": 2, "max_sentences": 1, "mask_fraction": 0.25, "general_examples": 2, "max_new_tokens": 6},
    "hypernet": {"max_new_tokens": 6},
    "memory": {"max_new_tokens": 6},
    "kstore": {"max_new_tokens": 6, "min_question_match": -1.0},
    "playbook": {"max_new_tokens": 6, "questions_per_doc": 1},
}


def collaborators(name: str, lm: LoadedModel) -> Callable[[], dict[str, Any]]:
    """What the learner takes besides its options, made afresh for each learner built: a stand-in embedder
    (context), a small untrained-but-nonzero network (hypernet, memory), a scripted writer LLM (playbook)."""
    if name == "context":
        return lambda: {"embedder": WordHashEmbedder()}
    if name == "hypernet":
        engine = DocToLora(lm, make_net(lm, nonzero_b=True), chunk_tokens=16)
        return lambda: {"engine": engine}
    if name == "memory":
        memory = strong_learner(lm).engine
        return lambda: {"engine": memory}
    if name == "playbook":
        lesson = json.dumps({"lessons": ["The Vellmar Bridge was designed by Tamsin Quell."]})
        replies = [practice(("Who designed the Vellmar Bridge?", "Tamsin Quell")), lesson, "not JSON"] * 2
        return lambda: {"llm": LLM(ScriptedBackend(replies))}
    return dict


@pytest.fixture(params=LEARNER_NAMES)
def make(request: pytest.FixtureRequest, tiny_lm: LoadedModel) -> Callable[..., Learner]:
    """Build learner `request.param` on the tiny model: with SMALL's options, or with `options` when given."""
    name = request.param
    extra = collaborators(name, tiny_lm)

    def build(options: dict[str, Any] | None = None, lm: LoadedModel = tiny_lm) -> Learner:
        return create_learner(name, lm, SMALL[name] if options is None else options, **extra())

    assert set(SMALL) == set(LEARNER_NAMES), "every registered learner needs its small settings here"
    return build


def answers(learner: Learner) -> list[str]:
    return [learner.answer(q).text for q in QUESTIONS]


def test_learn_then_answer(make: Callable[..., Learner]) -> None:
    learner = make()
    assert isinstance(learner, Learner)
    report = learner.learn(DOCS)
    assert isinstance(report, LearnReport) and report.learner == learner.name and report.documents == len(DOCS)
    for question in QUESTIONS:
        answer = learner.answer(question)
        assert isinstance(answer, Answer) and isinstance(answer.text, str) and answer.seconds >= 0


def test_save_then_load_into_a_default_learner_answers_the_same(make: Callable[..., Learner], tmp_path: Path) -> None:
    learner = make()
    learner.learn(DOCS)
    expected = answers(learner)
    learner.save(tmp_path / "ck")
    loaded = make({})  # the learner's defaults: the checkpoint's config must come back with it
    loaded.load(tmp_path / "ck")
    assert loaded.config == learner.config
    assert answers(loaded) == expected


def test_reset_forgets_what_was_learned(make: Callable[..., Learner]) -> None:
    never = answers(make())
    learner = make()
    learner.learn(DOCS)
    learner.reset()
    assert answers(learner) == never


def test_a_bad_option_is_refused_in_one_line_naming_it(make: Callable[..., Learner]) -> None:
    name = make().name
    for options, named in (({"no_such_option": 1}, "'no_such_option'"), ({"max_new_tokens": "many"}, "max_new_tokens")):
        with pytest.raises(LoracleError) as caught:
            make(options)
        message = str(caught.value)
        assert "\n" not in message and named in message and f"learner {name!r}" in message
        assert ", ".join(learner_config(name).model_fields) in message  # the valid keys


def test_a_checkpoint_of_another_base_model_is_refused(make: Callable[..., Learner], tmp_path: Path) -> None:
    learner = make()
    learner.learn(DOCS)
    learner.save(tmp_path / "ck")
    other_model = build_tiny_model(len(learner.lm.tokenizer), seed=7)
    other = LoadedModel(other_model, learner.lm.tokenizer, "other", "memory", model_fingerprint(other_model))
    with pytest.raises(LoracleError, match="made for another base model"):
        make({}, lm=other).load(tmp_path / "ck")


def test_a_stored_option_the_learner_no_longer_has_is_refused_in_one_line(
    make: Callable[..., Learner], tmp_path: Path
) -> None:
    learner = make()
    learner.save(tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / META).read_text(encoding="utf-8"))
    meta["config"]["retired_option"] = True
    (tmp_path / "ck" / META).write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(LoracleError, match=r"meta.json: learner '\w+' has no option 'retired_option' \(its options"):
        make({}).load(tmp_path / "ck")


def test_a_compiled_adapter_reports_the_one_report_type_and_records_the_config(
    make: Callable[..., Learner], tmp_path: Path
) -> None:
    learner = make()
    if not isinstance(learner, DocumentCompiler):
        pytest.skip(f"{learner.name} does not compile documents into adapters")
    report = learner.compile_document(DOCS[0], tmp_path / "adapter")
    assert isinstance(report, CompileReport) and report.doc_id == DOCS[0].id and report.bytes_on_disk > 0
    manifest = json.loads((tmp_path / "adapter" / "manifest.json").read_text(encoding="utf-8"))
    assert learner_config(learner.name, manifest["config"]) == learner.config
