"""The ablation runner's parts that need no model: every data file reads through its learner's config, the
rule decides as it says, and the dev sets leave out what an evaluation reads."""

from pathlib import Path

import pytest
from benchmarks.ablate import EXPERIMENTS, ArmResult, Experiment, judge, read_experiment, sign_test
from benchmarks.devdata import BENCHMARK_SQUAD_QUESTIONS, SQUAD, generated, squad_dev

from loracle.errors import LoracleError
from loracle.eval.general import READING_FILE, data_file, load_general
from loracle.eval.squad import load_squad, sample_questions


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_data_file_builds_each_arm_through_its_learners_config(path: Path) -> None:
    experiment = read_experiment(path)
    assert experiment.question and experiment.data and len(experiment.arms) >= 2
    assert all(type(config).__name__.endswith("Config") for config in experiment.arms.values())


def test_an_arm_with_an_option_the_learner_lacks_is_refused_before_any_model(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text(
        'learner = "context"\nquestion = "?"\n[arms]\na = {}\nb = { topk = 1 }\n'
        '[rule]\nkind = "most-right"\n[[data]]\nname = "d"\nkind = "generated"\nseed = "s"\n',
        encoding="utf-8",
    )
    with pytest.raises(LoracleError, match=r"typo.toml \[arms\] b: learner 'context' has no option 'topk'"):
        read_experiment(path)


def test_sign_test_counts_only_the_questions_where_the_two_differ() -> None:
    assert sign_test([True, True, False, False], [True, False, True, False]) == {"gained": 1, "lost": 1, "p": 0.75}
    assert sign_test([True] * 3, [True] * 3)["p"] == 1.0
    assert sign_test([True] * 5, [False] * 5)["p"] == 0.5**5  # five gains, no loss: the chance of that alone


def experiment(kind: str, fresh: list[str] | None = None) -> Experiment:
    rule = {"kind": kind, "incumbent": "old", "alpha": 0.05, **({"fresh": fresh} if fresh else {})}
    return Experiment("x", "context", "?", {"old": None, "new": None, "other": None}, [], rule)


def results(**right: tuple[list[bool], list[bool]]) -> dict[str, ArmResult]:
    """arm -> (verdicts on the set chosen on, verdicts on the fresh set)."""
    return {arm: ArmResult(right={"dev": dev, "fresh": fresh}) for arm, (dev, fresh) in right.items()}


def test_the_rule_moves_a_default_only_on_a_gain_beyond_chance_that_holds_on_fresh_sets() -> None:
    few = results(old=([False] * 6, []), new=([True, True] + [False] * 4, []), other=([False] * 6, []))
    assert judge(experiment("sign-test"), few)["chosen"] == "old"  # 2 gains, p = 0.25
    many = results(old=([False] * 6, [True]), new=([True] * 6, [True]), other=([True] * 5 + [False], [True]))
    decided = judge(experiment("sign-test", ["fresh"]), many)
    assert decided["challenger"] == "new" and decided["chosen"] == "new" and decided["choose_test"]["gained"] == 6
    worse_fresh = results(old=([False] * 6, [True]), new=([True] * 6, [False]), other=([False] * 6, [True]))
    assert judge(experiment("sign-test", ["fresh"]), worse_fresh)["chosen"] == "old"
    tie = results(old=([True] * 3, []), new=([True] * 3, []), other=([True] * 3, []))
    assert judge(experiment("sign-test"), tie)["challenger"] == "new"  # ties: the first listed challenger
    assert judge(experiment("sign-test"), tie)["chosen"] == "old"
    assert (
        judge(experiment("most-right"), results(old=([True], []), new=([True], []), other=([False], [])))["chosen"]
        == "old"
    )  # most-right: ties go to the first listed


def test_generated_dev_sets_are_the_same_on_every_build() -> None:
    first = generated("a", "seed", documents=3, per_doc=2, pairs=1, unrelated_documents=2, unrelated_per_doc=1)
    again = generated("a", "seed", documents=3, per_doc=2, pairs=1, unrelated_documents=2, unrelated_per_doc=1)
    assert [d.text for d in first.docs] == [d.text for d in again.docs] and first.questions == again.questions
    assert len(first.questions) == 3 * 2 + 1 + 2 and sum(q.unchanged for q in first.questions) == 2
    assert len(first.questions[6].parts) == 2  # the pair: right only if both parts are answered
    assert first.questions[6].right("Both " + " and ".join(p[0] for p in first.questions[6].parts))


@pytest.mark.skipif(not SQUAD.is_file(), reason="shared SQuAD file not beside this checkout")
def test_squad_dev_leaves_out_every_paragraph_an_evaluation_reads() -> None:
    paragraphs = load_squad(SQUAD)
    asked = {d for item in sample_questions(paragraphs, BENCHMARK_SQUAD_QUESTIONS) for d in item.docs}
    pasted = {" ".join(r.context.split()) for r in load_general(data_file(READING_FILE), "reading")}
    dev = squad_dev("all", per_doc=2)
    assert dev.docs and len(dev.questions) == 2 * len(dev.docs)
    assert not {doc.id for doc in dev.docs} & asked
    assert not {" ".join(doc.text.split()) for doc in dev.docs} & pasted
