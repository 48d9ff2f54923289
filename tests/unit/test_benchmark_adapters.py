"""benchmarks.adapters: choosing the corpus, writing it into a knowledge base, aggregating and tabulating the
four paths, and one smoke run of compile -> plain PEFT -> routed on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks import common
from benchmarks.adapters import (
    COLUMNS,
    Compiled,
    compile_kb,
    fill_raw,
    learner_entries,
    learning_summary,
    lost_share,
    path_summary,
    plain_peft,
    restrict,
    routed,
    summary_table,
    target_rows,
)

from loracle.documents import Document
from loracle.eval.general import GeneralItem
from loracle.eval.inputs import EvalInputs, load_inputs
from loracle.eval.qa import QAItem
from loracle.model import GenerationConfig, generate_chat, question_messages
from loracle.pipeline import raw_source
from tests.compiled_kb import seeded_lm
from tests.unit.test_eval_inputs import squad_file


def doc(name: str, text: str = "") -> Document:
    return Document.from_text(text or f"{name} text.", f"The {name.title()}", doc_id=name)


def inputs_of(*items: tuple[tuple[str, ...], str]) -> EvalInputs:
    docs = {f"{n}.md": doc(n) for n in ("a", "b", "c")}
    return EvalInputs(docs, [QAItem(tuple(f"{d}.md" for d in ds), q, ("x",)) for ds, q in items])


def test_restrict_keeps_the_first_documents_and_only_questions_all_of_whose_documents_are_kept() -> None:
    inputs = inputs_of(((("a",), "a1")), (("a",), "a2"), (("b",), "b1"), (("a", "b"), "ab"), (("c",), "c1"))
    two = restrict(inputs, 2, None, learn_unasked=True)
    assert list(two.docs) == ["a.md", "b.md"]
    assert [i.question for i in two.items] == ["a1", "a2", "b1", "ab"]
    # spread round-robin over the pools of questions (one per set of documents), as the eval harness does
    assert [i.question for i in restrict(inputs, None, 3, learn_unasked=True).items] == ["a1", "b1", "ab"]
    # SQuAD: only the paragraphs asked about are learned
    asked = restrict(inputs, None, 1, learn_unasked=False)
    assert [i.question for i in asked.items] == ["a1"] and list(asked.docs) == ["a.md"]
    assert list(restrict(inputs, None, 1, learn_unasked=True).docs) == ["a.md", "b.md", "c.md"]


def test_without_a_document_limit_squad_asks_what_loracle_eval_asks(tmp_path: Path) -> None:
    path = squad_file(tmp_path)
    for cap in (1, 2, None):
        ours = restrict(load_inputs(squad_file=path), None, cap, learn_unasked=False)
        theirs = load_inputs(squad_file=path, max_questions=cap)
        assert ours.items == theirs.items and list(ours.docs) == list(theirs.docs)


def test_a_document_written_into_raw_reads_back_as_itself_under_the_adapter_id(tmp_path: Path) -> None:
    docs = {"grey-towers-p01": doc("grey-towers-p01", 'It said "no": 9 towers.\n\nAnd 3 gates.'), "b.md": doc("b")}
    ids = fill_raw(tmp_path / "kb", docs)
    assert ids == {"grey-towers-p01": "grey-towers-p01", "b.md": "b"}
    source = raw_source(tmp_path / "kb")
    for name, adapter_id in ids.items():
        back = source.read(tmp_path / "kb" / "raw" / f"{Path(name).stem}.md")
        assert (back.id, back.title, back.text) == (adapter_id, docs[name].title, docs[name].text)


def answers(*right: bool, words: int = 3, seconds: float = 1.0) -> list[dict]:
    return [
        {"question": f"q{i}", "correct": r, "f1": 1.0 if r else 0.0, "words": words, "seconds": seconds}
        for i, r in enumerate(right)
    ]


def test_a_path_is_summarised_against_the_ceilings_right_answers_on_the_same_questions() -> None:
    ceiling = answers(True, True, True, True, False)
    summary = path_summary(answers(True, True, False, False, True, words=5), ceiling)
    assert (summary["right"], summary["total"], summary["ratio"]) == (3, 5, 0.75)
    assert summary["f1"] == pytest.approx(0.6) and summary["median_words"] == 5 and summary["seconds"] == 1.0
    low, high = summary["interval"]
    assert low <= 0.75 <= high
    assert path_summary(answers(False, True), answers(False, False))["ratio"] is None
    with pytest.raises(ValueError, match="different questions"):
        path_summary(answers(True), [{"question": "other", "correct": True}])


def test_general_answers_lost_are_pooled_over_the_adapters_applied() -> None:
    assert lost_share([answers(True, False), answers(True, True), answers(False, False)]) == {
        "lost": 3,
        "asked": 6,
        "share": 0.5,
    }
    assert lost_share([]) == {"lost": 0, "asked": 0, "share": None}


def measured() -> tuple[dict, dict, dict]:
    ceiling = answers(True, True, True, True)
    summaries = {
        "floor": path_summary(answers(False, False, False, False, seconds=0.5), ceiling),
        "ceiling": path_summary(ceiling, ceiling),
        "plain PEFT": path_summary(answers(True, True, True, False, words=30), ceiling),
        "routed": path_summary(answers(True, True, True, True, seconds=0.8), ceiling),
    }
    lost = {
        "plain PEFT": lost_share([answers(True, False), answers(True, True)]),
        "routed": lost_share([answers(True)]),
    }
    compiled = Compiled({"a": 10.0, "b": 30.0}, {"a": 100, "b": 200}, {"a": 1_000_000, "b": 1_000_000})
    return summaries, lost, learning_summary(compiled)


def test_learning_and_size_are_scaled_to_a_300_token_document() -> None:
    learning = measured()[2]
    assert learning["seconds_per_doc"] == 20.0 and learning["mean_tokens"] == 150.0
    assert learning["seconds_per_300_tokens"] == 40.0 and learning["mb_per_300_tokens"] == 2.0


def test_the_table_has_one_row_per_path_and_the_rows_judge_the_issues_targets() -> None:
    summaries, lost, learning = measured()
    table = summary_table(summaries, lost, learning, base_seconds=0.5)
    assert [cells[0] for cells in table] == ["floor", "ceiling", "plain PEFT", "routed"]
    assert all(len(cells) == len(COLUMNS) for cells in table)
    plain, route = table[2], table[3]
    assert plain[1:6] == ["3/4", plain[2], "0.750", "30", "1/4 = 0.250"] and plain[2].startswith("0.75 (")
    assert route[5] == "0/1 = 0.000" and route[6] == "0.80 (1.6x base)" and route[7] == "20.0"
    assert route[8] == "2.00 (1.00 per document)" and table[0][7] == table[0][8] == ""
    met = {r["metric"].split(": ", 1)[1]: r["met"] for r in target_rows("x", summaries, lost, learning, 0.5, 1.0)}
    assert met == {
        "plain PEFT accuracy / ceiling": False,
        "plain PEFT median reply": False,
        "plain PEFT general answers lost": False,
        "routed accuracy / ceiling": True,
        "routed forgetting": True,
        "routed answer time / base": True,
        "learning time per 300-token document": True,
        "adapter size per 300-token document": True,
    }


def test_results_md_shows_the_suites_table_and_adds_its_rows_to_the_learners_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(common, "RESULTS_MD", tmp_path / "RESULTS.md")
    machine = {"cores": 2}
    learners_table = [{"learner": "context", "corpus": "fictional", "accuracy": "0.9"}]
    common._write(tmp_path, "learners", [], {"table": learners_table}, machine)
    summaries, lost, learning = measured()
    data = {
        "summary_table": {"columns": list(COLUMNS), "rows": summary_table(summaries, lost, learning, 0.5)},
        "learner_entries": learner_entries("ttt", "fictional", summaries, lost, learning, "abc, now"),
    }
    common.write_result("adapters-fictional", [], data, machine)
    text = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    learners_part, section = text.split("## adapters-fictional")
    assert "| context | fictional | 0.9 |" in learners_part
    assert "| ttt: plain PEFT (benchmarks.adapters) | fictional | 3/4 against 4/4 = 0.750 |" in learners_part
    assert "| ttt: routed (benchmarks.adapters) | fictional | 4/4 against 4/4 = 1.000 |" in learners_part
    assert "| path | right / total |" in section and "| routed | 4/4 |" in section
    assert json.loads((tmp_path / "adapters-fictional.json").read_text())["data"]["summary_table"]["rows"]


def test_smoke_compile_then_plain_peft_and_routed_answer_alike_on_the_tiny_model(tmp_path: Path, one_thread) -> None:
    """The whole pipeline once on the tiny model: each question's plain PEFT load of its own adapter and the
    routed path (which routes it to that adapter) give the same greedy reply; other documents' adapters are
    applied alone to the general items."""
    lm = seeded_lm()
    docs = {
        "kestrel.md": doc("kestrel", "The Kestrel Valley Observatory was founded by Ilse Marrow in 1987."),
        "corra.md": doc("corra", "The river Corra powers the Varn station."),
    }
    items = [QAItem(("kestrel.md",), "Who founded the Kestrel Valley Observatory?", ("Ilse Marrow",))]
    general = [GeneralItem("knowledge", "What is the capital of France?", ("Paris",))]
    ids = fill_raw(tmp_path / "kb", docs)
    # enough training that the tiny model's replies change (the bare tiny model replies nothing)
    options = {"steps_per_doc": 20, "lr": 1e-1, "max_sentences": 2, "whiten_ridge": None}
    options |= {"general_examples": 0, "general_reading": 0}  # nothing to keep: the tiny model replies nothing
    compiled = compile_kb(lm, tmp_path / "kb", ids, "ttt", options, lambda _m: None)
    assert set(compiled.seconds) == set(docs) and all(b > 0 for b in compiled.bytes.values())
    plain, plain_general = plain_peft(lm, tmp_path / "kb" / "adapters", ids, items, general, 6, lambda _m: None)
    names = {adapter_id: name for name, adapter_id in ids.items()}
    route, route_general = routed(lm, tmp_path / "kb", names, items, general, 6, lambda _m: None)
    assert set(plain_general) == set(docs) and all(len(g) == 1 for g in plain_general.values())
    assert route[0]["cited"] == ["kestrel.md"] and route[0]["own_routed"]
    assert plain[0]["reply"] == route[0]["reply"] and len(route_general) == 1
    base = generate_chat(lm, question_messages(items[0].question), GenerationConfig(max_new_tokens=6))
    assert plain[0]["reply"] and plain[0]["reply"] != base  # the adapter was applied, and taken out again
    assert plain_general["kestrel.md"][0]["reply"] != plain_general["corra.md"][0]["reply"]
