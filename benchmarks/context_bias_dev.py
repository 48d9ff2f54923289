"""The context learner's logit bias, picked on dev data only: SQuAD dev paragraphs and generated documents.

The bias (`learners.context.passage_bias`) adds a constant to the logits of every token of the retrieved
chunks, and of the end-of-turn tokens, until the reply has used that token (`passage_generation`). A 135M
model given a passage often answers from its own memory or in its own words; the bias makes the passage's
words the likelier choice, so the reply copies the fact from it.
Each bias is scored through `ContextLearner.answer` itself (its default retrieval and gate) on two dev sets:
- SQuAD: ttt_dev's `squad_dev` paragraphs of the shared file, which the learners benchmark does not learn;
- generated: context_dev's documents and questions (seeds context-dev/*; some questions need two documents).
Beside each set's ceiling (the question's own document(s) in context, decoded plainly, as the learners
benchmark's reference is) the ceiling is also decoded with the chosen bias, so that what the bias gives any
prompt is told apart from what retrieval loses.
Choice: the most questions right over both sets together; ties go to the smaller bias.
results/context_bias_dev_question.json is the run that biased toward every question's own words as well
(`--own-passage-tokens 0`; the flag was then `--bias-question`).

Run: nice -n 5 .venv/bin/python -m benchmarks.context_bias_dev   (about 40 minutes on two threads)
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import dataclass

from benchmarks.common import row, write_result
from benchmarks.context_dev import SEED, DevQuestion, dev_questions, score
from benchmarks.dev import dev_samples, title_of
from benchmarks.ttt_dev import squad_dev
from loracle.documents import Document
from loracle.eval.harness import document_text
from loracle.learners.context.config import OWN_PASSAGE_TOKENS
from loracle.learners.context.learner import ContextLearner, passage_generation
from loracle.model import LoadedModel, generate_chat, load_model, question_messages
from loracle.runtime import configure_threads

BIASES = (0.0, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class DevSet:
    name: str
    docs: list[Document]
    questions: list[DevQuestion]


def squad_set(docs: int, per_doc: int) -> DevSet:
    dev = squad_dev(docs, per_doc)
    questions = [DevQuestion(q, (tuple(a),), (i,)) for i, (_, qs) in enumerate(dev) for q, a in qs]
    return DevSet("SQuAD dev", [doc for doc, _ in dev], questions)


def generated_set() -> DevSet:
    """context_dev's learned documents and questions, drawn with its seeds in its order."""
    pick = random.Random(f"{SEED}/questions")
    learned = dev_samples(SEED, "learned", 8, parts=2)
    docs = [Document.from_text(s.text, title_of(s.text), doc_id=f"dev-{i}") for i, s in enumerate(learned)]
    return DevSet("generated dev", docs, dev_questions(learned, 4, 8, pick))


def ceiling(lm: LoadedModel, dev: DevSet, bias: float, max_new_tokens: int) -> list[dict]:
    """Each question answered with its own document(s) in context, with `bias` toward their tokens."""
    replies = []
    for q in dev.questions:
        own = document_text([dev.docs[i] for i in q.docs])
        config = passage_generation(lm, [own], bias, max_new_tokens)
        replies.append(score(generate_chat(lm, question_messages(q.question, own), config), q))
    return replies


def summary(replies: list[dict]) -> dict[str, float]:
    return {
        "correct": sum(r["correct"] for r in replies),
        "f1": statistics.mean(r["f1"] for r in replies),
        "words": statistics.mean(len(r["reply"].split()) for r in replies),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--squad-docs", type=int, default=20)
    parser.add_argument("--squad-per-doc", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--biases", default=",".join(map(str, BIASES)), help="comma-separated bias values to score")
    parser.add_argument("--name", default="context_bias_dev", help="the result file's name (keeps others)")
    parser.add_argument(
        "--own-passage-tokens",
        type=lambda v: None if v == "none" else int(v),
        default=OWN_PASSAGE_TOKENS,
        help="the learner's own_passage_tokens (0: bias toward every question's words too; none: never)",
    )
    args = parser.parse_args()
    configure_threads(args.threads)
    biases = tuple(float(b) for b in args.biases.split(","))
    started = time.perf_counter()
    lm = load_model("embedded")
    sets = [squad_set(args.squad_docs, args.squad_per_doc), generated_set()]
    results: dict[str, dict] = {}
    for dev in sets:
        learner = ContextLearner(lm, own_passage_tokens=args.own_passage_tokens)
        learner.learn(dev.docs)
        by_bias = {}
        for bias in biases:
            learner.logit_bias = bias
            replies = [score(learner.answer(q.question).text, q) for q in dev.questions]
            by_bias[bias] = {**summary(replies), "replies": replies}
            print(f"{dev.name}, bias {bias}: {summary(replies)}", flush=True)
        results[dev.name] = {"questions": len(dev.questions), "by_bias": by_bias}
        max_new_tokens = learner.max_new_tokens
    chosen = max(biases, key=lambda b: (sum(r["by_bias"][b]["correct"] for r in results.values()), -b))
    rows = []
    for dev in sets:
        found = results[dev.name]
        found["ceiling"] = summary(ceiling(lm, dev, 0.0, max_new_tokens))
        found["ceiling_biased"] = summary(ceiling(lm, dev, chosen, max_new_tokens))
        n, top = found["questions"], found["ceiling"]["correct"]
        rows.append(row(f"{dev.name}: ceiling (own document in context)", top / n, note=f"{top}/{n}"))
        biased = found["ceiling_biased"]["correct"]
        rows.append(row(f"{dev.name}: ceiling with bias {chosen}", biased / n, note=f"{biased}/{n}"))
        for bias in biases:
            got = found["by_bias"][bias]
            note = f"{got['correct']}/{n}, token F1 {got['f1']:.3f}, {got['words']:.0f} words a reply"
            rows.append(row(f"{dev.name}: context, bias {bias}", got["correct"] / n, note=note))
            rows.append(row(f"{dev.name}: context, bias {bias} / ceiling", got["correct"] / top if top else 0.0,
                            "ratio", note="chosen" if bias == chosen else ""))  # fmt: skip
    rows.insert(0, row("chosen logit_bias", chosen, note="most right over both dev sets; ties to the smaller"))
    data = {
        "biases": list(biases),
        "own_passage_tokens": args.own_passage_tokens,
        "chosen": chosen,
        "sets": results,
        "seconds": time.perf_counter() - started,
    }
    path = write_result(args.name, rows, data)
    print(f"wrote {path} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
