"""Reading eval inputs: SQuAD files (a tiny one written here, and the real shared one), folders and QA files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loracle.cli.eval_commands import parse_options
from loracle.errors import LoracleError
from loracle.eval.inputs import load_inputs
from loracle.eval.squad import load_squad, sample_questions

SHARED_SQUAD = Path("/work/shared/data/squad2-dev-normans-rhine.json")


def squad_file(tmp_path: Path) -> Path:
    def qa(q: str, answer: str | None) -> dict:
        if answer is None:
            return {"question": q, "id": q, "answers": [], "is_impossible": True}
        return {"question": q, "id": q, "answers": [{"text": answer, "answer_start": 0}] * 2, "is_impossible": False}

    data = {
        "version": "v2.0",
        "data": [
            {
                "title": "Grey_Towers",
                "paragraphs": [
                    {"context": "Grey Towers was built in 1901.", "qas": [qa("When?", "1901"), qa("Why?", None)]},
                    {"context": "It has 9 towers and 3 gates.", "qas": [qa("Towers?", "9"), qa("Gates?", "3")]},
                ],
            },
            {"title": "Blue Lake", "paragraphs": [{"context": "Blue Lake is deep.", "qas": [qa("Deep?", "deep")]}]},
        ],
    }
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_squad_paragraphs_answerable_questions_and_documents(tmp_path: Path) -> None:
    paragraphs = load_squad(squad_file(tmp_path))
    assert [p.key for p in paragraphs] == ["grey-towers-p01", "grey-towers-p02", "blue-lake-p01"]
    assert [q.question for q in paragraphs[0].questions] == ["When?"]  # the unanswerable one is dropped
    assert paragraphs[0].questions[0].answers == ("1901",)  # duplicate answers collapse
    doc = paragraphs[1].document()
    assert doc.id == "grey-towers-p02" and doc.title == "Grey Towers (paragraph 2)" and "9 towers" in doc.text


def test_sampling_spreads_across_paragraphs_and_is_deterministic(tmp_path: Path) -> None:
    paragraphs = load_squad(squad_file(tmp_path))
    three = sample_questions(paragraphs, 3)
    assert [q.docs[0] for q in three] == ["grey-towers-p01", "grey-towers-p02", "blue-lake-p01"]
    assert sample_questions(paragraphs, 3) == three
    assert len(sample_questions(paragraphs, None)) == 4 == len(sample_questions(paragraphs, 99))
    assert len(sample_questions(paragraphs, 2)) == 2


def test_malformed_squad_files_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope", encoding="utf-8")
    with pytest.raises(LoracleError, match="not valid JSON"):
        load_squad(bad)
    bad.write_text(json.dumps({"data": [{"title": "x"}]}), encoding="utf-8")
    with pytest.raises(LoracleError, match="missing or malformed field 'paragraphs'"):
        load_squad(bad)
    bad.write_text(json.dumps([1, 2]), encoding="utf-8")
    with pytest.raises(LoracleError, match="not a SQuAD file"):
        load_squad(bad)


@pytest.mark.skipif(not SHARED_SQUAD.is_file(), reason="shared SQuAD file not on this machine")
def test_the_real_shared_squad_file() -> None:
    paragraphs = load_squad(SHARED_SQUAD)
    assert len(paragraphs) == 83
    assert sum(len(p.questions) for p in paragraphs) == 386  # 96 Normans + 290 Rhine answerable
    sampled = sample_questions(paragraphs, 40)
    assert len({q.docs[0] for q in sampled}) == 40  # one question from each of 40 paragraphs
    assert {q.docs[0].split("-p")[0] for q in sampled} == {"normans", "rhine"}


def test_inputs_from_folder_skip_bad_files_and_questions(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("Alpha is first.", encoding="utf-8")
    (docs / "bin.md").write_bytes(b"\x00\x01binary")
    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        '{"doc": "a.md", "q": "Which is first?", "a": ["Alpha"]}\n{"doc": "a.md+bin.md", "q": "Both?", "a": ["x"]}\n',
        encoding="utf-8",
    )
    inputs = load_inputs(docs, qa, squad_file(tmp_path), max_questions=2)
    assert sorted(inputs.docs) == ["a.md", "grey-towers-p01", "grey-towers-p02"]
    assert [i.question for i in inputs.items] == ["Which is first?", "When?", "Towers?"]
    assert any("binary" in w for w in inputs.warnings) and any("Both?" in w for w in inputs.warnings)
    assert inputs.notes["squad"]["questions_used"] == 2 and inputs.notes["squad"]["paragraphs_learned"] == 2
    with pytest.raises(LoracleError, match="--qa"):
        load_inputs(docs, None)
    with pytest.raises(LoracleError, match="nothing to evaluate"):
        load_inputs()


def test_learner_options_parse() -> None:
    assert parse_options(["ttt.steps=40", "kstore.lam=0.5", "kstore.layer=-1", "playbook.kb_state=x"]) == {
        "ttt": {"steps": 40},
        "kstore": {"lam": 0.5, "layer": -1},
        "playbook": {"kb_state": "x"},
    }
    with pytest.raises(LoracleError, match=r"learner\.key=value"):
        parse_options(["steps=4"])


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"doc": "a.md", "q": "Which?", "a": []}', "no accepted answer"),
        ('{"doc": "a.md", "q": "Which?", "a": ["", " . "]}', "no accepted answer"),
        ('{"doc": "a.md", "q": "  ", "a": ["Alpha"]}', "empty question"),
        ('{"doc": "a.md+", "q": "Which?", "a": ["Alpha"]}', "blank document name"),
        ('["a.md", "Which?", "Alpha"]', "not a QA line"),
    ],
)
def test_a_qa_line_that_could_never_be_scored_is_an_error_naming_its_line(
    tmp_path: Path, line: str, problem: str
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("Alpha is first.", encoding="utf-8")
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"doc": "a.md", "q": "Which is first?", "a": "Alpha"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(LoracleError, match=rf"qa\.jsonl:2: .*{problem}"):
        load_inputs(docs, qa)


def test_questions_about_no_readable_document_name_the_missing_ones(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "bin.md").write_bytes(b"\x00\x01binary")
    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        '{"doc": "gone.md", "q": "Where?", "a": ["x"]}\n{"doc": "bin.md", "q": "What?", "a": ["y"]}\n', encoding="utf-8"
    )
    with pytest.raises(LoracleError, match=r"qa\.jsonl: no question names a readable document .*bin\.md, gone\.md"):
        load_inputs(docs, qa)
