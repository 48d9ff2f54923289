import re
import subprocess
from pathlib import Path

import pytest
from benchmarks.learners import (
    against_ceiling,
    every_question,
    head_commit,
    newest_learners,
    reference_pass_seconds,
    rows_for,
    table_entries,
)

from loracle.eval.inputs import load_inputs
from loracle.model import LoadedModel
from tests.unit.test_eval_inputs import squad_file


def answered(accuracy: float, total: int = 4) -> list[dict]:
    """Per-question results of a run with `accuracy`: the first questions right, the rest wrong."""
    return [{"question": f"q{i}", "correct": i < accuracy * total} for i in range(total)]


def record(name: str, corpus: str, when: str, learners: dict[str, float]) -> dict:
    runs = [
        {"name": "floor", "kind": "reference", "accuracy": 0.0, "questions": answered(0.0)},
        {"name": "ceiling", "kind": "reference", "accuracy": 0.5, "questions": answered(0.5)},
    ]
    runs += [
        {
            "name": learner,
            "kind": "learner",
            "accuracy": accuracy,
            "f1": accuracy,
            "forgetting_ratio": 0.0,
            "general_before": 1.0,
            "general_after": 1.0,
            "learn_seconds_per_doc": 1.0,
            "answer_seconds_per_question": 1.0,
            "bytes_on_disk": 10,
            "questions": answered(accuracy),
        }
        for learner, accuracy in learners.items()
    ]
    return {
        "corpus": {"name": name, "corpus": corpus, "documents": 2, "mean_doc_tokens": 150.0},
        "runs": runs,
        "questions": 4,
        "when": when,
    }


def test_a_learner_run_again_on_a_corpus_is_reported_from_its_newest_run_only() -> None:
    old = record("squad-context-ttt", "squad", "2026-12-02 06:52:11 UTC", {"context": 0.25, "ttt": 0.25})
    new = record("squad-context", "squad", "2026-12-02 18:40:00 UTC", {"context": 0.5})
    other = record("fictional-context-ttt", "fictional", "2026-12-02 06:15:02 UTC", {"context": 0.5, "ttt": 0.25})
    assert newest_learners([old, new, other]) == [{"ttt"}, {"context"}, {"context", "ttt"}]
    metrics = [r["metric"] for r in rows_for(old, {"ttt"})]
    assert "squad-context-ttt: ttt accuracy / ceiling" in metrics
    assert not any(": context " in m for m in metrics)
    share = next(r for r in rows_for(new, {"context"}) if r["metric"] == "squad-context: context accuracy / ceiling")
    assert share["value"] == 1.0 and share["met"] is True
    # 2 of 4 right: some resamples leave the ceiling nothing right, so the ratio has no bound
    assert share["note"].endswith("no interval; right where the ceiling is wrong: 0, wrong where it is right: 0")


def test_the_table_has_every_learner_on_every_corpus_from_its_newest_run_or_says_it_is_not_measured() -> None:
    old = record("squad-context-ttt", "squad", "2026-12-02 06:52:11 UTC", {"context": 0.25, "ttt": 0.25})
    new = record("squad-context", "squad", "2026-12-02 18:40:00 UTC", {"context": 0.5})
    new["commit"] = "abc1234"
    records = [old, new]
    table = table_entries(records, newest_learners(records), ("context", "ttt", "hypernet"))
    cells = {(e["learner"], e["corpus"]): e for e in table}
    assert len(table) == 3 * 3  # three learners x the three corpora
    assert cells[("context", "squad")]["accuracy"] == "0.500 / 0.500 = 1.000"
    assert cells[("context", "squad")]["run"] == "abc1234, 2026-12-02 18:40:00 UTC"
    assert cells[("ttt", "squad")]["accuracy"] == "0.250 / 0.500 = 0.500" and cells[("ttt", "squad")]["bytes"] == "10"
    assert cells[("context", "squad")]["learn_s_300"] == "2.0"  # 1 s per document of 150 tokens
    assert cells[("hypernet", "squad")]["accuracy"] == cells[("ttt", "fictional")]["accuracy"] == "not yet measured"


def test_the_ratio_note_says_where_a_learner_and_the_ceiling_differ_and_how_far_the_ratio_can_move() -> None:
    ceiling = {"name": "ceiling", "questions": answered(0.5, total=20)}
    learner = {"name": "ttt", "questions": answered(0.5, total=20)}
    learner["questions"][0]["correct"] = False  # loses one the ceiling gets
    learner["questions"][15]["correct"] = True  # gains two it misses
    learner["questions"][16]["correct"] = True
    note = against_ceiling(learner, ceiling)
    assert "right where the ceiling is wrong: 2, wrong where it is right: 1" in note
    low, high = (float(x) for x in re.search(r"95% interval ([\d.]+)-([\d.]+)", note).groups())
    assert low < 11 / 10 < high and high - low > 0.2
    learner["questions"][3]["question"] = "another question"
    with pytest.raises(ValueError, match="different questions"):
        against_ceiling(learner, ceiling)


def test_all_questions_corpus_asks_every_answerable_question_of_the_learned_paragraphs_only(tmp_path: Path) -> None:
    squad = squad_file(tmp_path)
    inputs = load_inputs(squad_file=squad, max_questions=2)  # the sample: one question from each of two paragraphs
    assert sorted(inputs.docs) == ["grey-towers-p01", "grey-towers-p02"]
    asked = every_question(squad, inputs.docs)
    assert [(q.docs, q.question) for q in asked] == [
        (("grey-towers-p01",), "When?"),  # not "Why?": unanswerable
        (("grey-towers-p02",), "Towers?"),
        (("grey-towers-p02",), "Gates?"),  # not "Deep?": Blue Lake is not learned
    ]


def test_learning_times_are_also_read_as_multiples_of_the_runs_reference_pass(tiny_lm: LoadedModel) -> None:
    reference = reference_pass_seconds(tiny_lm, tokens=16, repeats=2)
    assert reference > 0  # wall seconds: no upper bound, as a loaded machine may take any time
    timed = record("squad-ttt", "squad", "2026-12-03 16:00:00 UTC", {"ttt": 0.25})
    timed["machine"] = {"reference_pass_s": 0.25}
    rows = {r["metric"]: r for r in rows_for(timed, {"ttt"})}
    learning = rows["squad-ttt: ttt learning time per 300-token document"]
    assert learning["value"] == 2.0 and "8 reference passes in this run" in learning["note"]  # 1 s per 150 tokens
    assert (
        "reference pass (one forward over 300 tokens) 0.250 s"
        in rows["squad-ttt: floor accuracy (no document)"]["note"]
    )
    untimed = record("squad-ttt", "squad", "2026-12-02 06:52:11 UTC", {"ttt": 0.25})  # an older run
    assert all("reference" not in r["note"] for r in rows_for(untimed, {"ttt"}))


def test_head_commit_marks_changed_code_but_not_results(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    assert head_commit(tmp_path) == ""
    git("init", "-q")
    for name in ("src/code.py", "benchmarks/RESULTS.md"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("one\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    commit = git("rev-parse", "--short", "HEAD").strip()
    assert head_commit(tmp_path) == commit
    (tmp_path / "benchmarks/RESULTS.md").write_text("two\n")
    assert head_commit(tmp_path) == commit
    (tmp_path / "src/code.py").write_text("two\n")
    assert head_commit(tmp_path) == f"{commit}+changes"


def test_a_run_with_learner_options_is_reported_beside_the_default_run_not_instead_of_it() -> None:
    default = record("fictional-ttt", "fictional", "2026-12-02 06:00:00 UTC", {"ttt": 0.5})
    dual = record("fictional-dual", "fictional", "2026-12-07 06:00:00 UTC", {"ttt": 0.25})
    dual["learner_options"] = {"ttt": {"variant": "dual_mlp"}}
    records = [default, dual]
    assert newest_learners(records) == [{"ttt"}, {"ttt"}]
    cells = {(e["learner"], e["corpus"]): e for e in table_entries(records, newest_learners(records), ("ttt",))}
    assert cells[("ttt", "fictional")]["accuracy"].startswith("0.500")
    assert cells[("ttt variant=dual_mlp", "fictional")]["accuracy"].startswith("0.250")
    assert "variant" in rows_for(dual, {"ttt"})[0]["note"]


def test_engine_rows_pair_the_engines_of_one_invocation() -> None:
    from benchmarks.learners import engine_rows

    records = []
    for engine, session, seconds in (("torch", "s1", 4.0), ("openvino", "s1", 1.0), ("openvino", "s0", 9.0)):
        entry = record(f"squad-{engine}", "squad", session, {"ttt": 0.5})
        entry["runs"][-1]["answer_seconds_per_question"] = seconds
        entry["machine"] = {"load_avg_1m_at_start": 1.0}
        entry["engine"] = {"name": engine, "session": session, "load_1m_end": 2.0}
        records.append(entry)
    (only,) = engine_rows(records)  # the openvino run of session s0 has no torch run to compare with
    assert only["metric"] == "squad: ttt answer time, openvino / torch" and only["value"] == 0.25
    assert "1.00 vs 4.00 s/question" in only["note"] and "torch 1.0-2.0, openvino 1.0-2.0" in only["note"]


def test_an_engine_comparison_run_never_replaces_a_learners_row() -> None:
    full = record("squad-ttt", "squad", "2026-12-02 06:52:11 UTC", {"ttt": 0.25})
    engine = record("squad-engine-openvino", "squad", "2026-12-07 12:00:51 UTC", {"ttt": 1.0})
    engine["engine"] = {"name": "openvino", "session": "2026-12-07 12:00:51 UTC", "load_1m_end": 1.0}
    records = [full, engine]
    assert newest_learners(records) == [{"ttt"}, set()]
    cells = {(e["learner"], e["corpus"]): e for e in table_entries(records, newest_learners(records), ("ttt",))}
    assert cells[("ttt", "squad")]["accuracy"].startswith("0.250")
