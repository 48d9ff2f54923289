"""ttt settings tried on dev data only: never the sample or an eval set's documents and questions.

Two dev sources. `generated`: fictional three-paragraph documents (about 300 tokens each, seeds
"ttt-dev/<i>"). `squad`: paragraphs of the shared SQuAD file that the learners benchmark does not learn
(its sample of 24 questions names the paragraphs it uses; these are the others), so many documents on one
topic compete, as they do there. Each run learns all `--docs` documents in one learner, as `loracle eval`
does, then answers `--per-doc` questions about each closed-book; the same questions are asked of the base
model with the document in context (the dev ceiling). Options are passed to TTTLearner as KEY=VALUE, so a
setting can be checked against the default in one run:

    nice -n 5 .venv/bin/python -m benchmarks.ttt_dev --source squad --docs 10 --option route_top_k=1 --label top1

Results append to results/ttt_dev.json (one entry per label) and its rows to RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, row, write_result
from benchmarks.dev import apply_settings, title_of
from benchmarks.learners import SQUAD
from loracle.cli.adapter_commands import parse_options
from loracle.documents import Document
from loracle.eval.general import READING_FILE, data_file, load_general
from loracle.eval.scoring import is_correct
from loracle.eval.squad import SquadParagraph, load_squad, sample_questions
from loracle.learners.hypernet.data import fictional_sample
from loracle.learners.ttt.learner import TTTLearner
from loracle.model import GenerationConfig, LoadedModel, generate_chat, load_model, question_messages
from loracle.runtime import configure_threads

SEED = "ttt-dev"
#: the SQuAD questions the learners benchmark asks (its --max-questions default); their paragraphs are not dev
BENCHMARK_SQUAD_QUESTIONS = 24


def generated_dev(docs: int, per_doc: int) -> list[tuple[Document, list[tuple[str, tuple[str, ...]]]]]:
    pick = random.Random(f"{SEED}/questions")
    out = []
    for i in range(docs):
        sample = fictional_sample(random.Random(f"{SEED}/{i}"), parts=3)
        doc = Document.from_text(sample.text, title_of(sample.text), doc_id=f"dev-{i}")
        out.append((doc, [(q, tuple(a)) for q, a in pick.sample(sample.qa, per_doc)]))
    return out


def squad_dev(docs: int, per_doc: int) -> list[tuple[Document, list[tuple[str, tuple[str, ...]]]]]:
    """`docs` dev paragraphs spread evenly over the pool (`dev_paragraphs`), `per_doc` questions each."""
    pool = dev_paragraphs(per_doc)
    step = len(pool) / docs
    return dev_questions([pool[int(i * step)] for i in range(docs)], per_doc)


def squad_dev_all(per_doc: int) -> list[tuple[Document, list[tuple[str, tuple[str, ...]]]]]:
    """Every dev paragraph that no evaluation reads, not even the forgetting set's reading items, `per_doc`
    questions each."""
    return dev_questions(dev_paragraphs(per_doc, spare_reading=True), per_doc)


def dev_paragraphs(per_doc: int, *, spare_reading: bool = False) -> list[SquadParagraph]:
    """The paragraphs of the shared SQuAD file that the learners benchmark does not learn and that have more
    than `per_doc` questions; with `spare_reading`, also none that the bundled general reading set (the
    forgetting measure) pastes into its prompts. squad_dev predates that exclusion and keeps its paragraphs."""
    paragraphs = load_squad(SQUAD)
    used = read_elsewhere(paragraphs, spare_reading=spare_reading)
    return [p for p in paragraphs if p.key not in used and len(p.questions) >= per_doc + 1]


def read_elsewhere(paragraphs: list[SquadParagraph], *, spare_reading: bool) -> set[str]:
    """The keys of the `paragraphs` that the learners benchmark learns and, with `spare_reading`, of those that
    the bundled general reading set pastes into its prompts."""
    used = {d for item in sample_questions(paragraphs, BENCHMARK_SQUAD_QUESTIONS) for d in item.docs}
    if spare_reading:
        pasted = {" ".join(item.context.split()) for item in load_general(data_file(READING_FILE), "reading")}
        used |= {p.key for p in paragraphs if " ".join(p.context.split()) in pasted}
    return used


def dev_questions(
    paragraphs: list[SquadParagraph], per_doc: int
) -> list[tuple[Document, list[tuple[str, tuple[str, ...]]]]]:
    """Each paragraph as a document with its questions 2 to per_doc + 1 (the first is left for other uses)."""
    return [(p.document(), [(q.question, q.answers) for q in p.questions[1 : per_doc + 1]]) for p in paragraphs]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", choices=("generated", "squad"), default="generated")
    parser.add_argument("--docs", type=int, default=3)
    parser.add_argument("--per-doc", type=int, default=4)
    parser.add_argument("--option", action="append", default=[], help="TTTLearner option KEY=VALUE")
    parser.add_argument("--label", default="default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save", type=Path, help="save the learned adapters here (a ttt checkpoint)")
    parser.add_argument(
        "--load",
        type=Path,
        help="answer with adapters saved by an earlier run with the same --source/--docs (no learning); "
        "--option then sets answer-time options on top of the saved ones",
    )
    args = parser.parse_args()
    configure_threads(args.threads)
    options: dict[str, Any] = parse_options(args.option)
    lm = load_model("embedded")
    dev = (squad_dev if args.source == "squad" else generated_dev)(args.docs, args.per_doc)
    learner, learn_s = learned(lm, [doc for doc, _ in dev], options, args.load)
    if args.save:
        learner.save(args.save)
    config = GenerationConfig(learner.max_new_tokens)  # the ceiling answers at the same length as the learner
    correct, ceiling, routed = [], [], []
    for doc, questions in dev:
        for question, accepted in questions:
            reply = learner.answer(question).text
            correct.append(is_correct(reply, accepted))
            routed.append(learner.route(question)[:1] == [doc.id])
            in_context = generate_chat(lm, question_messages(question, doc.text), config)
            ceiling.append(is_correct(in_context, accepted))
            print(f"[{doc.id}] {question} -> {reply[:80]!r} ({correct[-1]}; in context {ceiling[-1]})", flush=True)
    entry = {
        "source": args.source,
        "options": options,
        "docs": args.docs,
        "per_doc": args.per_doc,
        "threads": args.threads,
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "accuracy": statistics.mean(correct),
        "ceiling": statistics.mean(ceiling),
        "routed_to_its_document": statistics.mean(routed),
        "learn_seconds_per_300_tokens": learn_s,
        **({"adapters_from": str(args.load)} if args.load else {}),
    }
    print(json.dumps(entry))
    previous = RESULTS_DIR / "ttt_dev.json"
    runs = json.loads(previous.read_text(encoding="utf-8"))["data"]["runs"] if previous.exists() else {}
    runs[args.label] = entry
    write_runs(runs)


def learned(
    lm: LoadedModel, docs: list[Document], options: dict[str, Any], saved: Path | None
) -> tuple[TTTLearner, float | None]:
    """A learner that knows `docs` and its learning seconds per 300 tokens (None when loaded from `saved`)."""
    if saved is None:
        learner = TTTLearner(lm, **options)
        report = learner.learn(docs)
        return learner, report.seconds * 300 / report.tokens
    learner = TTTLearner(lm)
    learner.load(saved)
    if sorted(learner.documents) != sorted(d.id for d in docs):
        raise SystemExit(f"{saved}: its adapters are for other documents than this --source/--docs")
    apply_settings(learner, options)
    return learner, None


def write_runs(runs: dict[str, dict[str, Any]]) -> None:
    """results/ttt_dev.json and the RESULTS.md rows: one per labelled run, each with its own settings."""
    rows = [
        row(
            f"{label}: accuracy / ceiling",
            f"{e['accuracy']:.3f} / {e['ceiling']:.3f}",
            note=f"{e.get('source', 'generated')} dev, {json.dumps(e['options'])}; {e['docs']} docs x {e['per_doc']} "
            f"questions, {e['threads']} threads; "
            + (
                f"learning {e['learn_seconds_per_300_tokens']:.0f} s per 300 tokens"
                if e["learn_seconds_per_300_tokens"] is not None
                else f"adapters from {e['adapters_from']}"
            )
            + (f"; routed to its document {e['routed_to_its_document']:.2f}" if "routed_to_its_document" in e else "")
            + f"; run {e['when']}",
        )
        for label, e in runs.items()
    ]
    write_result("ttt_dev", rows, {"seeds": SEED, "runs": runs})


if __name__ == "__main__":
    main()
