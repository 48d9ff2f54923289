"""Run one ablation from its data file: arms of a learner's settings on dev data, judged by a rule fixed before.

A data file (benchmarks/experiments/<name>.toml) names the learner, the `question` it answers, `settings`
shared by every arm, the `[arms]` (each a table of options, built through the learner's own config, so an
unknown option or a bad value stops the run before the model loads; TOML has no null, so the string "null"
stands for it), the `[[data]]` dev sets (devdata.py) and the `[rule]`:

- kind "sign-test": the challenger right most often on the sets the rule chooses on (ties: the first listed)
  replaces `incumbent` only if, on the questions exactly one of the two gets right, a one-sided exact sign
  test gives p < `alpha`, and, on the `fresh` sets (held out from choosing), it is right where the incumbent
  is wrong at least as often as the reverse;
- kind "most-right": the arm right most often on the sets it chooses on (ties: the first listed).

Each arm learns each set's documents in a fresh learner, then answers its questions as `loracle ask` would.
The record goes to benchmarks/results/ablations/<name>.json and ABLATIONS.md is rebuilt from every record.

    nice -n 10 .venv/bin/python -m benchmarks.ablate benchmarks/experiments/context_order.toml
"""

from __future__ import annotations

import argparse
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import discordant, machine_info, row, write_ablation
from benchmarks.devdata import DevSet, dev_set

EXPERIMENTS = Path(__file__).parent / "experiments"
RULES = ("sign-test", "most-right")


@dataclass
class Experiment:
    """A data file, read and checked: every arm's config built, the rule's names known."""

    name: str
    learner: str
    question: str
    arms: dict[str, Any]  # arm -> the learner's config
    data: list[dict[str, Any]]
    rule: dict[str, Any]
    source: str = ""
    notes: str = ""

    @property
    def fresh(self) -> list[str]:
        return list(self.rule.get("fresh", []))


@dataclass
class ArmResult:
    right: dict[str, list[bool]] = field(default_factory=dict)  # set -> each question's verdict
    replies: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0


def read_experiment(path: Path) -> Experiment:
    """The experiment in `path`, every arm validated by the learner's config (before any model loads)."""
    from loracle.learners import learner_config

    with path.open("rb") as handle:
        spec = tomllib.load(handle)
    learner = spec["learner"]
    settings = spec.get("settings", {})
    arms = {
        arm: learner_config(learner, _nulls({**settings, **options}), where=f"{path} [arms] {arm}")
        for arm, options in spec["arms"].items()
    }
    rule = spec["rule"]
    names = [d["name"] for d in spec["data"]]
    if rule.get("kind") not in RULES:
        raise ValueError(f"{path}: rule kind {rule.get('kind')!r}: expected one of {', '.join(RULES)}")
    if rule["kind"] == "sign-test" and rule.get("incumbent") not in arms:
        raise ValueError(f"{path}: the rule's incumbent {rule.get('incumbent')!r} is not an arm")
    if unknown := set(rule.get("fresh", [])) - set(names):
        raise ValueError(f"{path}: the rule's fresh sets {sorted(unknown)} are not among the data ({names})")
    return Experiment(path.stem, learner, spec["question"], arms, spec["data"], rule, str(path), spec.get("notes", ""))


def _nulls(options: dict[str, Any]) -> dict[str, Any]:
    return {key: None if value == "null" else value for key, value in options.items()}


def sign_test(challenger: list[bool], incumbent: list[bool]) -> dict[str, Any]:
    """The questions only `challenger` gets right ("gained"), those only `incumbent` gets right ("lost"), and
    the one-sided exact binomial p of at least that many gains among them (1.0 when they never differ)."""
    from scipy.stats import binomtest

    gained, lost = discordant(challenger, incumbent)
    p = binomtest(gained, gained + lost, 0.5, alternative="greater").pvalue if gained + lost else 1.0
    return {"gained": gained, "lost": lost, "p": float(p)}


def judge(experiment: Experiment, results: dict[str, ArmResult]) -> dict[str, Any]:
    """What the rule decides from each arm's verdicts: the arm chosen, and for a sign test the best challenger and
    its tests against the incumbent."""
    rule = experiment.rule

    def pooled(arm: str, fresh: bool) -> list[bool]:
        return [r for name, rs in results[arm].right.items() if (name in experiment.fresh) == fresh for r in rs]

    def best(arms: list[str]) -> str:  # the most right on the sets chosen on; ties: the first listed
        return max(arms, key=lambda arm: (sum(pooled(arm, False)), -arms.index(arm)))

    outcome: dict[str, Any] = {"kind": rule["kind"], "right": {arm: sum(pooled(arm, False)) for arm in results}}
    if rule["kind"] == "most-right":
        return {**outcome, "chosen": best(list(results))}
    incumbent = rule["incumbent"]
    challenger = best([arm for arm in results if arm != incumbent])
    choose = sign_test(pooled(challenger, False), pooled(incumbent, False))
    fresh = sign_test(pooled(challenger, True), pooled(incumbent, True)) if experiment.fresh else None
    beats = choose["p"] < rule.get("alpha", 0.05) and (fresh is None or fresh["gained"] >= fresh["lost"])
    return {**outcome, "incumbent": incumbent, "challenger": challenger, "choose_test": choose, "fresh_test": fresh,
            "chosen": challenger if beats else incumbent}  # fmt: skip


class BaseReplies:
    """The base model's closed-book replies to the questions scored against it (about nothing learned), decoded
    once per reply length."""

    def __init__(self, lm: Any) -> None:
        self.lm = lm
        self.cache: dict[tuple[str, int], str] = {}

    def __call__(self, question: str, max_new_tokens: int) -> str:
        from loracle.model import GenerationConfig, generate_chat, question_messages

        key = (question, max_new_tokens)
        if key not in self.cache:
            self.cache[key] = generate_chat(self.lm, question_messages(question), GenerationConfig(max_new_tokens))
        return self.cache[key]


def run_arm(lm: Any, experiment: Experiment, arm: str, sets: list[DevSet], base: BaseReplies) -> ArmResult:
    """Arm `arm` on every set: a fresh learner learns the set's documents and answers its questions."""
    from loracle.learners import create_learner

    config = experiment.arms[arm]
    length = config.model_dump().get("max_new_tokens", 48)
    result = ArmResult()
    start = time.perf_counter()
    for dev in sets:
        learner = create_learner(experiment.learner, lm, config)
        learner.learn(dev.docs)
        replies = [learner.answer(q.question).text for q in dev.questions]
        result.replies[dev.name] = replies
        result.right[dev.name] = [
            q.right(reply, base(q.question, length) if q.unchanged else None)
            for q, reply in zip(dev.questions, replies, strict=True)
        ]
        print(f"[{arm}] {dev.name}: {sum(result.right[dev.name])} of {len(replies)} right", flush=True)
    result.seconds = time.perf_counter() - start
    return result


def record(experiment: Experiment, sets: list[DevSet], results: dict[str, ArmResult], outcome: dict) -> tuple:
    """The rows and data of the experiment's result file."""
    rows = [row("chosen", outcome["chosen"], note=rule_note(experiment, outcome))]
    for arm, result in results.items():
        for dev in sets:
            right = result.right[dev.name]
            held = " (held out)" if dev.name in experiment.fresh else ""
            rows.append(row(f"{arm}: {dev.name}{held}", f"{sum(right)} of {len(right)}"))
    data = {
        "question": experiment.question,
        "learner": experiment.learner,
        "source": experiment.source,
        "notes": experiment.notes,
        "rule": experiment.rule,
        "data": experiment.data,
        "arms": {arm: config.model_dump() for arm, config in experiment.arms.items()},
        "outcome": outcome,
        "results": {
            arm: {"right": r.right, "replies": r.replies, "seconds": round(r.seconds, 1)} for arm, r in results.items()
        },
        "questions": {dev.name: [q.question for q in dev.questions] for dev in sets},
    }
    return rows, data


def rule_note(experiment: Experiment, outcome: dict[str, Any]) -> str:
    right = ", ".join(f"{arm} {n}" for arm, n in outcome["right"].items())
    if outcome["kind"] == "most-right":
        return f"most right on the sets chosen on ({right})"
    test, fresh = outcome["choose_test"], outcome["fresh_test"]
    note = (
        f"right on the sets chosen on: {right}; the best challenger, {outcome['challenger']}, against "
        f"{outcome['incumbent']}: {test['gained']} gained, {test['lost']} lost, sign test p = {test['p']:.3f} "
        f"(replaces it below {experiment.rule.get('alpha', 0.05)})"
    )
    if fresh is not None:
        note += f"; held-out sets: {fresh['gained']} gained, {fresh['lost']} lost (must not lose more)"
    return note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", type=Path, help="a data file, e.g. benchmarks/experiments/context_order.toml")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    experiment = read_experiment(args.experiment)  # a bad arm is refused before the model loads

    from loracle.model import load_model
    from loracle.runtime import configure_threads

    configure_threads(args.threads)
    started = time.perf_counter()
    sets = [dev_set(table) for table in experiment.data]
    lm = load_model("embedded")
    base = BaseReplies(lm)
    results = {arm: run_arm(lm, experiment, arm, sets, base) for arm in experiment.arms}
    outcome = judge(experiment, results)
    rows, data = record(experiment, sets, results, outcome)
    data["seconds"] = round(time.perf_counter() - started, 1)
    path = write_ablation(experiment.name, rows, data, machine_info())
    print(f"wrote {path}: chosen {outcome['chosen']} ({rule_note(experiment, outcome)})")


if __name__ == "__main__":
    main()
