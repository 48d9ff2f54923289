"""Whether the context learner should let a question through its similarity gate on its words alone
(`lexical_gate`: one of the best hits holds every search term of the question, at least two of them).

The similarity gate shuts out some questions whose own paragraph is the best hit: on the 48-question SQuAD
dev set of context_squad_dev, 4 of 48, 3 of them answered right with the paragraph in context; they are
short questions in the paragraph's own words ("Who was Margaret's husband?"). This scores the option
without decoding anything again, from the replies context_dev and context_squad_dev already decoded (run
them first): a question that passes either way gets the learner's reply with no gate, one that passes
neither the base model's. Their indexes are rebuilt (same documents) to ask which questions pass by words.

Choice, fixed in the commit that brought it, before its first run: `lexical_gate` is turned on only if
(1) with it, at most context_dev's share (MAX_UNRELATED_PASS) of its unrelated questions pass the gate, and
(2) over generated dev and SQuAD dev questions pooled, it beats the gate alone by the one-sided sign test
at p < 0.05 (context_squad_dev's SIGNIFICANCE). General-knowledge questions passing are only reported.
Both dev sets are scored at the settings their replies were decoded with (context_dev's chosen settings and
gate; the learner's defaults on SQuAD dev). Nothing here comes from an evaluation set.

Run after context_dev and context_squad_dev: nice -n 5 .venv/bin/python -m benchmarks.context_gate_dev   (a minute)
"""

from __future__ import annotations

import statistics
import time

from benchmarks.common import read_result, row, write_result
from benchmarks.context_dev import MAX_UNRELATED_PASS, dev_set
from benchmarks.context_squad_dev import SIGNIFICANCE, test_note
from benchmarks.dev import general_questions, sign_test
from benchmarks.ttt_dev import squad_dev_all
from loracle.documents import Document
from loracle.learners.context.learner import GATE_HITS, ContextLearner
from loracle.model import load_model


def main() -> None:
    started = time.perf_counter()
    generated = read_result("context_dev")
    squad = read_result("context_squad_dev")
    lm = load_model("embedded")

    docs, questions, unrelated = dev_set(8, 4, 8, 10, 3)  # context_dev's defaults
    if [q.question for q in questions] != generated["questions"] or unrelated != generated["unrelated_questions"]:
        raise SystemExit("context_dev.json was made with other dev settings than context_dev's defaults")
    learner = indexed(ContextLearner(lm, min_similarity=-1.0), docs)
    gate = generated["chosen"]["min_similarity"]
    settings = {k: v for k, v in generated["chosen"].items() if k != "min_similarity"}
    ungated = next(e for e in generated["grid"] if e["settings"] == settings)["by_gate"]["-1.0"]["right"]
    base = [b["correct"] for b in generated["base"]]
    by_words = {
        "learned": [by_their_words(learner, q.question) for q in questions],
        "unrelated": [by_their_words(learner, q) for q in unrelated],
        "general": [by_their_words(learner, q) for q in general_questions()],
    }
    similar = {key: [s >= gate for s in generated["similarity"][key]] for key in by_words}
    generated_off = [u if s else b for u, b, s in zip(ungated, base, similar["learned"], strict=True)]
    generated_on = [
        u if s or w else b for u, b, s, w in zip(ungated, base, similar["learned"], by_words["learned"], strict=True)
    ]

    records = squad["records"]
    dev = squad_dev_all(2)
    if [q for _, qs in dev for q, _ in qs] != [r["question"] for r in records]:
        raise SystemExit("context_squad_dev.json was made with other dev questions than squad_dev_all(2)")
    squad_learner = indexed(ContextLearner(lm), [doc for doc, _ in dev])
    squad_words = [by_their_words(squad_learner, r["question"]) for r in records]
    squad_off = [r["context"] for r in records]
    squad_on = [
        r["context_without_gate"] if r["gate_passes"] or w else r["base"]
        for r, w in zip(records, squad_words, strict=True)
    ]

    def passing(key: str, lexical: bool) -> float:
        return statistics.mean(s or (lexical and w) for s, w in zip(similar[key], by_words[key], strict=True))

    shares = {key: {"gate alone": passing(key, False), "with lexical_gate": passing(key, True)} for key in by_words}
    test = sign_test(generated_on + squad_on, generated_off + squad_off)
    unrelated_on = shares["unrelated"]["with lexical_gate"]
    adopt = unrelated_on <= MAX_UNRELATED_PASS and test["p"] < SIGNIFICANCE
    shut_out = [w for r, w in zip(records, squad_words, strict=True) if not r["gate_passes"]]
    n_gen, n_squad = len(questions), len(records)
    rows = [
        row("chosen lexical_gate", str(adopt), note=f"on only if unrelated questions passing with it "
            f"({unrelated_on:.3f}) <= {MAX_UNRELATED_PASS} and " + test_note(test, "with it", "without")),
        row("generated dev right, similarity gate alone", sum(generated_off), note=f"of {n_gen}; gate {gate}"),
        row("generated dev right, with lexical_gate", sum(generated_on), note=f"of {n_gen}"),
        row("SQuAD dev right, similarity gate alone", sum(squad_off), note=f"of {n_squad}"),
        row("SQuAD dev right, with lexical_gate", sum(squad_on), note=f"of {n_squad}"),
        row("SQuAD dev questions the similarity gate shuts out", len(shut_out),
            note=f"{sum(shut_out)} of them pass by their words"),
        *[row(f"{key} questions passing, similarity gate alone / with lexical_gate",
              f"{shares[key]['gate alone']:.3f} / {shares[key]['with lexical_gate']:.3f}",
              note=f"{len(similar[key])} questions" + ("; reported only, never to choose" if key == "general" else ""))
          for key in by_words],
    ]  # fmt: skip
    data = {
        "gate": gate,
        "by_words": by_words,
        "squad_by_words": squad_words,
        "generated": {"off": generated_off, "on": generated_on},
        "squad": {"off": squad_off, "on": squad_on},
        "passing": shares,
        "test": test,
        "chosen": adopt,
        "seconds": time.perf_counter() - started,
    }
    path = write_result("context_gate_dev", rows, data)
    print(f"wrote {path}: lexical_gate {adopt} ({test})")


def indexed(learner: ContextLearner, docs: list[Document]) -> ContextLearner:
    learner.learn(docs)
    return learner


def by_their_words(learner: ContextLearner, question: str) -> bool:
    """Whether `lexical_gate` lets `question` through: one of its best hits holds every one of its terms."""
    return learner.holds_every_term(question, learner.index.search_chunks(question, n=GATE_HITS))


if __name__ == "__main__":
    main()
