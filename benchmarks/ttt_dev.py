"""ttt settings tried on dev data only: generated fictional documents, never the sample or an eval set.

Each run learns `--docs` generated three-paragraph documents (about 300 tokens each, seeds "ttt-dev/<i>"),
one at a time as `loracle compile` would, then answers `--per-doc` questions about each closed-book. The
same questions are asked of the base model with the document in context (the dev ceiling). Options are
passed to TTTLearner as KEY=VALUE, so a faster setting can be checked against the default in one run:

    nice -n 5 .venv/bin/python -m benchmarks.ttt_dev --option steps_per_doc=10 --label fast

Results append to results/ttt_dev.json (one entry per label) and its rows to RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from typing import Any

from benchmarks.common import RESULTS_DIR, row, write_result
from benchmarks.dev import title_of
from loracle.cli.adapter_commands import parse_options
from loracle.documents import Document
from loracle.eval.scoring import is_correct
from loracle.hypernet.data import fictional_sample
from loracle.learners.ttt import TTTLearner
from loracle.model import GenerationConfig, generate_chat, load_model, question_messages
from loracle.runtime import configure_threads

SEED = "ttt-dev"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=3)
    parser.add_argument("--per-doc", type=int, default=4)
    parser.add_argument("--option", action="append", default=[], help="TTTLearner option KEY=VALUE")
    parser.add_argument("--label", default="default")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    configure_threads(args.threads)
    options: dict[str, Any] = parse_options(args.option)
    lm = load_model("embedded")
    pick = random.Random(f"{SEED}/questions")
    samples = [fictional_sample(random.Random(f"{SEED}/{i}"), parts=3) for i in range(args.docs)]
    config = GenerationConfig(max_new_tokens=24)
    learn_s, tokens, correct, ceiling = [], [], [], []
    for i, sample in enumerate(samples):
        doc = Document.from_text(sample.text, title_of(sample.text), doc_id=f"dev-{i}")
        learner = TTTLearner(lm, **options)
        report = learner.learn([doc])
        learn_s.append(report.seconds)
        tokens.append(report.tokens)
        for question, accepted in pick.sample(sample.qa, args.per_doc):
            reply = learner.answer(question).text
            correct.append(is_correct(reply, accepted))
            in_context = generate_chat(lm, question_messages(question, doc.text), config)
            ceiling.append(is_correct(in_context, accepted))
            print(f"[{i}] {question} -> {reply[:80]!r} ({correct[-1]}; in context {ceiling[-1]})", flush=True)
        learner.reset()
    entry = {
        "options": options,
        "docs": args.docs,
        "per_doc": args.per_doc,
        "threads": args.threads,
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "accuracy": statistics.mean(correct),
        "ceiling": statistics.mean(ceiling),
        "learn_seconds_per_300_tokens": statistics.mean(s * 300 / t for s, t in zip(learn_s, tokens, strict=True)),
    }
    print(json.dumps(entry))
    previous = RESULTS_DIR / "ttt_dev.json"
    runs = json.loads(previous.read_text(encoding="utf-8"))["data"]["runs"] if previous.exists() else {}
    runs[args.label] = entry
    write_runs(runs)


def write_runs(runs: dict[str, dict[str, Any]]) -> None:
    """results/ttt_dev.json and the RESULTS.md rows: one per labelled run, each with its own settings."""
    rows = [
        row(
            f"{label}: accuracy / ceiling",
            f"{e['accuracy']:.3f} / {e['ceiling']:.3f}",
            note=f"{json.dumps(e['options'])}; {e['docs']} docs x {e['per_doc']} questions, {e['threads']} threads; "
            f"learning {e['learn_seconds_per_300_tokens']:.0f} s per 300 tokens; run {e['when']}",
        )
        for label, e in runs.items()
    ]
    write_result("ttt_dev", rows, {"seeds": SEED, "runs": runs})


if __name__ == "__main__":
    main()
