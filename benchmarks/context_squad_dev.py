"""The context learner on SQuAD dev paragraphs: how close it comes to the ceiling, where the rest is lost,
and which retrieval settings and gate its defaults should have.

Dev data: every paragraph of the shared SQuAD file that no evaluation reads (not learned by the learners
benchmark, not pasted by the forgetting set's reading items) with 3 or more questions, learned together
in one learner; questions 2 and 3 of each are asked (ttt_dev's `squad_dev_all`). Each question is answered
with its own paragraph in context (the ceiling), by the learner with its defaults (and with its similarity
gate off), and under every setting of the grid at the default gate. Every reply is decoded as the learner
decodes it, with its default logit bias toward the passages in context (the ceiling too). Retrieval is scored
too: whether the question's own paragraph is the best hit, and whether the gate lets the best hit through.

Choice, fixed in the commit that brought it, before its first run:
- settings: each grid setting is scored on the pooled dev questions, generated dev (context_dev's results,
  at its chosen gate) plus the SQuAD dev questions here (at the learner's gate). The setting with the most
  right (ties: grid order) replaces the learner's current defaults only if it beats them beyond chance: on
  the questions where exactly one of the two is right, a one-sided exact sign test gives p < 0.05.
  Otherwise the defaults stay.
- gate: of the gates that tie on generated dev (context_dev's chosen settings, at most its share of
  unrelated questions let through), the one most often right here (then the higher) replaces the current
  gate only under the same test on the questions here.
Nothing here comes from an evaluation set. Why this rule: the one before it ranked generated dev first (a
fifth of its questions need two documents) and let real paragraphs only break its ties, and it moved a
default on a one-question gain. That it was worth changing was seen on the evaluation results (the default
it chose scored below the one it replaced there); the rule itself looks at dev data only.

Run after context_dev: nice -n 5 .venv/bin/python -m benchmarks.context_squad_dev   (about 25 minutes on one thread)
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from benchmarks.common import read_result, row, write_result
from benchmarks.context_dev import MAX_UNRELATED_PASS
from benchmarks.dev import Decoder, apply_settings, pass_rate, retrieval_grid, sign_test
from benchmarks.ttt_dev import squad_dev_all
from loracle.eval.scoring import is_correct
from loracle.learners.context.learner import GATE_HITS, ContextLearner
from loracle.model import load_model
from loracle.runtime import configure_threads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-doc", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    configure_threads(args.threads)
    started = time.perf_counter()
    lm = load_model("embedded")
    dev = squad_dev_all(args.per_doc)
    learner = ContextLearner(lm)
    learner.learn([doc for doc, _ in dev])
    reply = Decoder(learner)

    def answered(question: str) -> str:
        """The learner's reply (what `answer` gives), decoded once per distinct prompt."""
        return reply(question, [h.text for h in learner.retrieve(question)])

    gate = learner.min_similarity
    records = []
    for doc, questions in dev:
        for question, accepted in questions:
            best = learner.index.search_chunks(question, n=GATE_HITS)
            score = learner.gate_score(question, best)  # -1 with no hits
            passes = score >= gate
            learned = answered(question)
            if passes:
                ungated = learned
            else:
                learner.min_similarity = -1.0
                ungated = answered(question)
                learner.min_similarity = gate
            records.append(
                {
                    "doc": doc.id,
                    "question": question,
                    "own_paragraph_first": bool(best) and best[0].doc_id == doc.id,
                    "gate_passes": passes,
                    "gate_score": score,
                    "base": is_correct(reply(question, []), accepted),
                    "ceiling": is_correct(reply(question, [doc.text]), accepted),
                    "context": is_correct(learned, accepted),
                    "context_without_gate": is_correct(ungated, accepted),
                }
            )
            print(records[-1], flush=True)

    defaults = {key: getattr(learner, key) for key in retrieval_grid()[0]}
    grid = []
    for settings in retrieval_grid():
        apply_settings(learner, settings)
        right = [is_correct(answered(question), accepted) for _, questions in dev for question, accepted in questions]
        grid.append({"settings": settings, "accuracy": statistics.mean(right), "right": right})
        print(grid[-1], flush=True)
    apply_settings(learner, defaults)
    generated = read_result("context_dev")
    best, chosen, settings_test = pooled_choice(grid, generated, defaults)
    by_gate = {
        g: [r["context_without_gate"] if r["gate_score"] >= g else r["base"] for r in records]
        for g in tied_gates(generated)
    }
    best_gate = max(by_gate, key=lambda g: (sum(by_gate[g]), g))
    gate_test = sign_test(by_gate[best_gate], [r["context"] for r in records])
    chosen_gate = best_gate if gate_test["p"] < SIGNIFICANCE else gate

    def share(key: str, of: list[dict] = records) -> float:
        return statistics.mean(r[key] for r in of) if of else 0.0

    shut_out = [r for r in records if not r["gate_passes"]]
    note = (
        f"{len(dev)} SQuAD dev paragraphs x {args.per_doc} questions; context defaults, gate {gate:.3f}, "
        f"bias {learner.logit_bias}"
    )
    n_generated = len(best["generated"]["right"])
    rows = [
        row("ceiling accuracy (own paragraph in context, same bias)", share("ceiling"), note=note),
        row("context accuracy", share("context")),
        row("context accuracy / ceiling", share("context") / share("ceiling") if share("ceiling") else 0.0, "ratio",
            note="reported only (the 0.95 target is the learners benchmark's, on eval data)"),
        row("context accuracy, similarity gate off", share("context_without_gate")),
        row("own paragraph is the best hit", share("own_paragraph_first")),
        row("questions the gate shuts out", 1 - share("gate_passes"), note=f"{len(shut_out)} questions"),
        row("shut-out questions whose own paragraph is the best hit", share("own_paragraph_first", shut_out)),
        *[row(f"context accuracy, gate {g}", statistics.mean(right),
              note="tied on generated dev" + ("; best here" if g == best_gate else ""))
          for g, right in by_gate.items()],
        row("chosen min_similarity", chosen_gate, note=test_note(gate_test, "best gate", "current gate")),
        *[row(f"pooled right, {describe(e['settings'])}", sum(e["pooled_right"]),
              note=f"generated dev {sum(e['generated']['right'])} of {n_generated}, "
              f"SQuAD dev {sum(e['right'])} of {len(records)}"
              + ("; best" if e is best else "") + ("; defaults" if e["settings"] == defaults else ""))
          for e in grid],
        row("chosen settings", describe(chosen["settings"]), note=test_note(settings_test, "best", "defaults")),
    ]  # fmt: skip
    data = {
        "options": learner.options(),
        "records": records,
        "grid": grid,
        "best": best["settings"],
        "settings_test": settings_test,
        "chosen": chosen["settings"],
        "best_gate": best_gate,
        "gate_test": gate_test,
        "chosen_gate": chosen_gate,
        "seconds": time.perf_counter() - started,
    }
    path = write_result("context_squad_dev", rows, data)
    print(f"wrote {path} in {time.perf_counter() - started:.0f} s")


#: the one-sided sign test's p below which a dev winner replaces a current default
SIGNIFICANCE = 0.05


def pooled_choice(
    grid: list[dict[str, Any]], generated: dict[str, Any], defaults: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The grid entry right most often over generated dev (at context_dev's chosen gate) and the SQuAD dev
    questions here (ties: grid order); the entry chosen, which is that one only if it beats the defaults'
    entry by the sign test; and the test. Each entry gets its generated-dev scores under "generated" and its
    per-question results over both under "pooled_right"."""
    gate = str(generated["chosen"]["min_similarity"])  # by_gate keys are strings once written as JSON
    scores = {describe(e["settings"]): e["by_gate"][gate] for e in generated["grid"]}
    for entry in grid:
        entry["generated"] = scores[describe(entry["settings"])]
        entry["pooled_right"] = entry["generated"]["right"] + entry["right"]
    best = max(grid, key=lambda e: sum(e["pooled_right"]))  # max keeps the first of equals
    incumbent = next(e for e in grid if e["settings"] == defaults)
    test = sign_test(best["pooled_right"], incumbent["pooled_right"])
    return best, best if test["p"] < SIGNIFICANCE else incumbent, test


def test_note(test: dict[str, Any], challenger: str, incumbent: str) -> str:
    return (
        f"{challenger} right where {incumbent} is wrong: {test['gained']}, the reverse: {test['lost']}; "
        f"sign test p = {test['p']:.3f} (changes only below {SIGNIFICANCE})"
    )


def tied_gates(generated: dict[str, Any]) -> list[float]:
    """The gates that tie at the best generated-dev accuracy and F1 of context_dev's chosen settings and let at
    most MAX_UNRELATED_PASS of its unrelated questions through (context_dev takes the highest of them)."""
    settings = {k: v for k, v in generated["chosen"].items() if k != "min_similarity"}
    scores = next(e["by_gate"] for e in generated["grid"] if e["settings"] == settings)
    unrelated = generated["similarity"]["unrelated"]
    allowed = {g: v for g, v in scores.items() if pass_rate(unrelated, float(g)) <= MAX_UNRELATED_PASS}
    best = max((v["accuracy"], v["f1"]) for v in allowed.values())
    return sorted(float(g) for g, v in allowed.items() if (v["accuracy"], v["f1"]) == best)


def describe(settings: dict[str, Any]) -> str:
    text = f"top {settings['top_k']}, relative score {settings['min_relative_score']}, {settings['order']} order"
    if settings.get("split_questions"):
        return text + ", one hit per question asked"
    return text + (", each further hit with a new question word" if settings.get("require_new_terms") else "")


if __name__ == "__main__":
    main()
