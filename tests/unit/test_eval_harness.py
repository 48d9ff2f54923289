"""The eval harness on the tiny model, with small learners defined here (test doubles, never in src/)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from loracle.bundled import general_prompts
from loracle.documents import Document
from loracle.eval.general import GeneralItem, bundled_general
from loracle.eval.harness import (
    EvalResult,
    EvalSettings,
    QuestionResult,
    RunResult,
    document_text,
    forgetting_ratio,
    run_eval,
    run_learner,
    select_general,
)
from loracle.eval.qa import QAItem
from loracle.eval.report import (
    LATEST_JSON,
    LATEST_PNG,
    eval_figure,
    results_caption,
    results_table,
)
from loracle.eval.run import write_outputs
from loracle.eval.scoring import normalize
from loracle.learners.base import Answer, Citation, LearnReport
from loracle.learners.checkpoint import save_checkpoint

DOCS = {
    "a.md": Document.from_text("The Vellmar Bridge crosses the Dunmere.", "Vellmar Bridge"),
    "b.md": Document.from_text("Harlow Cross has a mayor called Ina Torvald.", "Harlow Cross"),
}
ITEMS = [
    QAItem(("a.md",), "Which river does the Vellmar Bridge cross?", ("Dunmere",)),
    QAItem(("b.md",), "Who is the mayor of Harlow Cross?", ("Ina Torvald",)),
    QAItem(("a.md", "b.md"), "Who is the mayor where the bridge stands?", ("Ina Torvald",)),
    QAItem(("a.md",), "How long is the bridge?", ("418 metres",)),
]


class RecitingLearner:
    """Answers every question with the text of all documents it learned (so it knows 3 of the 4 answers)."""

    name = "recite"

    def __init__(self, fingerprint: str = "x") -> None:
        self.texts: list[str] = []
        self.ids: list[str] = []
        self.fingerprint = fingerprint
        self.resets = 0

    def learn(self, docs: Sequence[Document]) -> LearnReport:
        self.texts = [d.text for d in docs]
        self.ids = [d.id for d in docs]
        return LearnReport(self.name, len(docs), 10, 0.0)

    def answer(self, question: str) -> Answer:
        return Answer(" ".join(self.texts), [Citation(i, i) for i in reversed(self.ids)])

    def reset(self) -> None:
        self.texts = []
        self.resets += 1

    def save(self, path: Path) -> None:
        save_checkpoint(path, self.name, self.fingerprint, {"w": torch.zeros(10)}, {"texts": self.texts})

    def load(self, path: Path) -> None:
        raise AssertionError("not used")


class BrokenLearner(RecitingLearner):
    name = "broken"

    def learn(self, docs: Sequence[Document]) -> LearnReport:
        raise RuntimeError("out of memory")


def test_references_and_learner_rows(tiny_lm, tmp_path: Path) -> None:
    learners = {"recite": RecitingLearner(), "broken": BrokenLearner()}
    general = [GeneralItem("knowledge", "What is the capital of France?", ("Paris",))]
    result = run_eval(
        tiny_lm, DOCS, ITEMS, ["recite", "broken"], learners.__getitem__, general, EvalSettings(max_new_tokens=3)
    )
    assert [r.name for r in result.runs] == ["floor", "ceiling", "recite", "broken"]
    recite = result.run("recite")
    assert (recite.correct, recite.total, recite.accuracy) == (3, 4, 0.75)
    assert recite.f1 is not None and 0 < recite.f1 < 1
    assert recite.bytes_on_disk is not None and recite.bytes_on_disk > 40  # 10 float32 + meta
    assert recite.learn_seconds_per_doc is not None and recite.answer_seconds_per_question is not None
    assert learners["recite"].resets == 1 and recite.details["base_restored_after_reset"]
    assert result.run("broken").error == "RuntimeError: out of memory" and result.run("broken").accuracy is None
    two_doc = result.run("ceiling").questions[2]
    assert two_doc.docs == ["a.md", "b.md"] and two_doc.cited == []
    assert recite.questions[0].cited == ["b.md", "a.md"]  # the learner's document ids, named as questions name them
    for ref in ("floor", "ceiling"):
        assert result.run(ref).total == 4 and result.run(ref).kind == "reference"

    written = write_outputs(result, tmp_path / "r.json", tmp_path / "r.png", tmp_path / "state")
    data = json.loads((tmp_path / "r.json").read_text())
    assert [r["name"] for r in data["runs"]] == ["floor", "ceiling", "recite", "broken"]
    assert data["runs"][2]["questions"][0]["correct"] is True
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "state" / "eval" / LATEST_JSON).is_file()
    assert (tmp_path / "state" / "eval" / LATEST_PNG).read_bytes()[:4] == b"\x89PNG"
    assert len(written) == 3
    assert results_table(result).row_count == 4


def test_results_table_fits_an_80_column_terminal_unclipped() -> None:
    from rich.console import Console

    result = EvalResult("SmolLM2-135M-Instruct", "f", ["a.md"] * 20, 46, {}, {})
    result.runs = [
        RunResult("floor", "reference", 0.043, 0.1, 2, 46, answer_seconds_per_question=1.2),
        RunResult("ceiling", "reference", 0.587, 0.5, 27, 46, answer_seconds_per_question=2.2),
        RunResult("playbook", "learner", 0.63, 0.5, 29, 46, 119.3, 8.42, 12_300_000, 1.0, 0.944, 0.056),
    ]
    console = Console(width=80, record=True)
    console.print(results_table(result))
    text = console.export_text()
    assert "…" not in text
    assert "playbook 63% 29/46" in " ".join(text.split()) and "100%→94%" in text


def test_each_learner_gets_the_interval_of_its_share_of_the_ceiling_and_the_caption_shows_it(
    tiny_lm, monkeypatch: pytest.MonkeyPatch
) -> None:
    paired = []

    def interval(right, reference):  # the tiny model's ceiling gets nothing right: no real interval to check
        paired.append((right, reference))
        return (0.5, 1.5)

    monkeypatch.setattr("loracle.eval.harness.ratio_interval", interval)
    result = run_eval(tiny_lm, DOCS, ITEMS, ["recite"], {"recite": RecitingLearner()}.__getitem__, [],
                      EvalSettings(max_new_tokens=3))  # fmt: skip
    recite, ceiling = result.run("recite"), result.run("ceiling")
    assert paired == [([q.correct for q in recite.questions], [q.correct for q in ceiling.questions])]
    assert recite.ceiling_interval == (0.5, 1.5) and ceiling.ceiling_interval is None

    result = EvalResult("SmolLM2-135M-Instruct", "f", ["a.md"], 40, {}, {})
    result.runs = [
        RunResult("ceiling", "reference", 0.5, 0.5, 20, 40),
        RunResult("context", "learner", 0.5, 0.5, 20, 40, ceiling_interval=(0.78, 1.25)),
        RunResult("kstore", "learner", 0.0, 0.0, 0, 40),  # no interval (a result saved before there were any)
    ]
    caption = results_caption(result)
    assert "context 78%–125%" in caption and "kstore" not in caption


def test_the_plot_labels_every_bar_so_zero_forgetting_shows_as_a_measured_zero() -> None:
    import matplotlib.pyplot as plt

    result = EvalResult("SmolLM2-135M-Instruct", "f", ["a.md"] * 2, 46, {}, {})
    result.runs = [
        RunResult("floor", "reference", 0.043, 0.1, 2, 46),
        RunResult("ceiling", "reference", 0.587, 0.5, 27, 46),
        RunResult("context", "learner", 0.63, 0.17, 29, 46, 0.2, 2.1, 21_000, 0.944, 0.944, 0.0),
        RunResult("ttt", "learner", 0.5, 0.15, 23, 46, 43.0, 40.0, 8_000_000, 0.944, 0.833, 0.118),
    ]
    fig = eval_figure(result)
    accuracy, forgetting = fig.axes
    labels = [t.get_text() for t in accuracy.texts]
    assert {"2/46", "27/46", "29/46", "23/46", "0.17"} <= set(labels)
    assert [t.get_text() for t in forgetting.texts] == ["0.000", "0.118"]
    bottom, top = forgetting.get_ylim()
    assert bottom == 0 and top > 0.118  # the ratio above the target is in view, nothing below zero is implied
    assert {t.get_text() for t in accuracy.get_legend().get_texts()} == {
        "accuracy (reference)",
        "accuracy (learner)",
        "token F1",
    }
    plt.close(fig)


def test_forgetting_arithmetic() -> None:
    general = [
        GeneralItem("knowledge", "What is the capital of France?", ("Paris",)),
        GeneralItem("knowledge", "What is the capital of Italy?", ("Rome",)),
    ]

    class ParisLearner(RecitingLearner):
        def answer(self, question: str) -> Answer:
            return Answer("Paris")

    run = run_learner("paris", lambda _n: ParisLearner(), DOCS, ITEMS, general, 0.8, print)
    assert run.general_after == 0.5
    assert run.forgetting_ratio == pytest.approx((0.8 - 0.5) / 0.8)
    assert run.wrong_after == [
        {"kind": "knowledge", "question": "What is the capital of Italy?", "answers": ["Rome"], "reply": "Paris"}
    ]
    assert forgetting_ratio(1.0, 1.0) == 0.0
    assert forgetting_ratio(0.0, 0.0) is None
    assert forgetting_ratio(None, 0.5) is None


def test_general_selection_keeps_known_facts_and_all_reading() -> None:
    class Base:
        batch_size = 1
        asked: int = 0

        def closed_book(self, prompts: Sequence[str]) -> list[str]:
            self.asked += len(prompts)
            return ["Paris" if "France" in p else "no idea" for p in prompts]

    items = [
        GeneralItem("knowledge", "What is the capital of France?", ("Paris",)),
        GeneralItem("knowledge", "What is the capital of Peru?", ("Lima",)),
        GeneralItem("reading", "Where?", ("Oslo",), context="It is in Oslo."),
    ]
    kept, before = select_general(Base(), items)  # type: ignore[arg-type]
    assert [i.question for i in kept] == ["What is the capital of France?", "Where?"]
    assert before == 0.5
    base = Base()
    capped, before = select_general(base, items, knowledge_max=1, reading_max=0)  # type: ignore[arg-type]
    assert [i.question for i in capped] == ["What is the capital of France?"] and before == 1.0
    assert base.asked == 1  # stopped asking once the cap was reached
    assert "It is in Oslo." in items[2].prompt and items[0].prompt == items[0].question


def test_bundled_general_leaves_out_learned_paragraphs() -> None:
    everything = bundled_general()
    reading = [g for g in everything if g.kind == "reading"]
    assert len([g for g in everything if g.kind == "knowledge"]) >= 30 and len(reading) >= 8
    fewer = bundled_general({reading[0].context})
    assert len(fewer) == len(everything) - 1


def test_general_knowledge_shares_no_question_with_training_or_dev_sets() -> None:
    """Forgetting is measured on questions no adapter trains on (the bundled general prompts) and no setting
    was chosen on (benchmarks/data/dev_general.jsonl), compared as the scorer compares answers."""
    knowledge = [normalize(g.question) for g in bundled_general() if g.kind == "knowledge"]
    assert len(knowledge) == len(set(knowledge)) >= 200
    trained = {normalize(line) for line in general_prompts()}
    dev_file = Path(__file__).parents[2] / "benchmarks" / "data" / "dev_general.jsonl"
    dev = {normalize(json.loads(line)["q"]) for line in dev_file.read_text(encoding="utf-8").splitlines()}
    assert not set(knowledge) & trained and not set(knowledge) & dev


def test_two_document_prompt_has_both_documents() -> None:
    text = document_text([DOCS["a.md"], DOCS["b.md"]])
    assert "Dunmere" in text and "Ina Torvald" in text and "# Harlow Cross" in text
    assert document_text([DOCS["a.md"]]) == DOCS["a.md"].text


def test_a_learner_that_leaves_the_base_model_changed_is_flagged(tiny_lm) -> None:
    class Vandal(RecitingLearner):
        def reset(self) -> None:
            with torch.no_grad():
                next(tiny_lm.model.parameters()).add_(1.0)

    result = run_eval(tiny_lm, DOCS, ITEMS[:1], ["vandal"], lambda _n: Vandal(), (), EvalSettings(max_new_tokens=2))
    assert "did not restore the base model" in (result.run("vandal").error or "")


def test_questions_naming_unknown_documents_are_refused(tiny_lm) -> None:
    with pytest.raises(ValueError, match=r"c\.md"):
        run_eval(tiny_lm, DOCS, [QAItem(("c.md",), "q", ("a",))], [], RecitingLearner)


def test_small_eval_for_the_demo_prints_the_table(tiny_lm) -> None:
    from rich.console import Console

    from loracle.eval.run import run_small_eval

    console = Console(record=True, width=200)
    result = run_small_eval(tiny_lm, console, learners=("kstore",), max_new_tokens=2, max_questions=2)
    assert [r.name for r in result.runs] == ["floor", "ceiling", "kstore"] and result.questions == 2
    text = console.export_text()
    assert "ceiling" in text and "kstore" in text


def saved_result() -> EvalResult:
    result = EvalResult("SmolLM2-135M-Instruct", "f00d", ["a.md", "b.md"], 2, {"knowledge": 12}, {"max_new_tokens": 8})
    answer = QuestionResult("Who?", ["a.md"], ["Ada"], "Ada did.", True, 1.0, 0.5, cited=["a.md"])
    result.runs = [
        RunResult("ceiling", "reference", 0.5, 0.4, 1, 2, questions=[answer]),
        RunResult("context", "learner", 1.0, 0.6, 2, 2, 0.1, 0.9, 2048, 1.0, 1.0, 0.0, details={"chunks": 3}),
    ]
    return result


def test_a_saved_result_reads_back_whole(tmp_path: Path) -> None:
    from loracle.eval.report import read_result, write_json

    path = tmp_path / "out.json"
    write_json(saved_result(), path)
    assert read_result(path) == saved_result()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "not a JSON file"),
        (b"\xff\xfe{}", "not a JSON file"),
        (b"[1, 2]", "not a loracle eval result (top level:"),
        (b'{"model": "m", "fingerprint": "f", "documents": [], "questions": "many"}', "questions:"),
    ],
)
def test_a_file_that_is_not_a_saved_result_is_named_in_one_line(tmp_path: Path, content: bytes, problem: str) -> None:
    from loracle.errors import LoracleError
    from loracle.eval.report import read_result

    path = tmp_path / "out.json"
    path.write_bytes(content)
    with pytest.raises(LoracleError) as error:
        read_result(path)
    assert str(error.value).startswith(f"{path}: ") and problem in str(error.value)
    assert "\n" not in str(error.value)
