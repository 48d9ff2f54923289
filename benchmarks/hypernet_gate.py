"""Gate a (pilot) of a hypernetwork design: on held-back single-fact documents, do its adapters carry the fact?

Each held-back document (`loracle hypernet-data --kinds single:100 --seed 1000`, a seed training never uses) is
one invented fact and one question whose answer is an invented name or number. Every question is answered
closed-book four ways: floor (no adapter), the adapter generated from its own document, the adapter the same
network generates from another held-back document (a fixed derangement: a generic prior that helps whatever the
document cannot pass this), and, for scale, the document in context (the ceiling). The design passes when its
own-document answers beat both the floor and the shuffled ones, one-sided sign test p < 0.01 each. The run's
learning curve (its train.jsonl) is drawn beside the result.

Run: nice -n 10 .venv/bin/python -m benchmarks.hypernet_gate --run RUN_DIR --heldout DATA_DIR --name pilot-small
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.ablate import sign_test
from benchmarks.common import row, write_result
from loracle.eval.scoring import is_correct
from loracle.learners.hypernet.curve import plot_curve, read_log
from loracle.learners.hypernet.dataset import CachedDoc, TrainingSet
from loracle.learners.hypernet.engine import DocToLora
from loracle.learners.lora import Lora, hooked
from loracle.model import GenerationConfig, LoadedModel, encode_chat, generate_chat, question_messages
from loracle.model.batch import greedy_batch

#: the significance a design must reach against the floor and against shuffled documents
ALPHA = 0.01


def derangement(count: int, seed: int = 0) -> list[int]:
    """For each document, the index of another one (no document is its own), from a random cycle."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    other = [0] * count
    for j, i in enumerate(order):
        other[i] = order[(j + 1) % count]
    return other


def closed_book(lm: LoadedModel, question: str, lora: Lora, max_new_tokens: int) -> str:
    with hooked(lm.model, lora):
        return generate_chat(lm, question_messages(question), GenerationConfig(max_new_tokens=max_new_tokens))


def answer_all(engine: DocToLora, docs: Sequence[CachedDoc], max_new_tokens: int) -> dict[str, list[str]]:
    """Each document's first question answered four ways (floor, ceiling, own adapter, shuffled adapter)."""
    lm = engine.lm
    questions = [doc.qa[0][0] for doc in docs]
    floor = greedy_batch(lm, [encode_chat(lm.tokenizer, question_messages(q)) for q in questions], max_new_tokens)
    ceiling = greedy_batch(
        lm, [encode_chat(lm.tokenizer, question_messages(q, d.text)) for q, d in zip(questions, docs, strict=True)],
        max_new_tokens,
    )  # fmt: skip
    adapters = [engine.combine(engine.internalise(doc.text)) for doc in docs]
    other = derangement(len(docs))
    own = [closed_book(lm, q, adapters[i], max_new_tokens) for i, q in enumerate(questions)]
    shuffled = [closed_book(lm, q, adapters[other[i]], max_new_tokens) for i, q in enumerate(questions)]
    return {"floor": floor, "ceiling": ceiling, "own document": own, "shuffled document": shuffled}


def verdicts(docs: Sequence[CachedDoc], replies: dict[str, list[str]]) -> dict[str, list[bool]]:
    return {
        arm: [is_correct(reply, doc.qa[0][1]) for reply, doc in zip(texts, docs, strict=True)]
        for arm, texts in replies.items()
    }


def gate(correct: dict[str, list[bool]]) -> dict[str, Any]:
    """Sign tests of the own-document adapters against the floor and against shuffled documents."""
    own = correct["own document"]
    tests = {arm: sign_test(own, correct[arm]) for arm in ("floor", "shuffled document")}
    return {"tests": tests, "passed": all(t["p"] < ALPHA for t in tests.values())}


def main() -> None:
    from loracle.model import load_model
    from loracle.runtime import configure_threads

    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True, help="a train-hypernet --out folder")
    parser.add_argument("--heldout", type=Path, required=True, help="held-back single-fact set (hypernet-data)")
    parser.add_argument("--name", default="pilot", help="the design's name in the result (hypernet_gate_<name>)")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=0, help="only the first N documents (a smoke run; 0 = all)")
    args = parser.parse_args()
    configure_threads(args.threads)
    lm = load_model("embedded")
    heldout = TrainingSet.load(args.heldout, lm.fingerprint)
    docs = [d for d in heldout.docs if d.kind == "single"][: args.limit or None]
    engine = DocToLora.from_checkpoint(lm, args.run)
    replies = answer_all(engine, docs, args.max_new_tokens)
    correct = verdicts(docs, replies)
    result = gate(correct)
    log = read_log(args.run / "train.jsonl")
    name = args.name.replace("-", "_")
    png = Path(__file__).parent / f"hypernet_gate_{name}.png"
    plot_curve(log, png, title=f"Hypernetwork pilot '{args.name}': context distillation on CPU")
    accuracy = {arm: sum(v) / len(v) for arm, v in correct.items()}
    seconds = sum(r["seconds"] for r in log)
    rows = [
        row("training steps / wall time (CPU, shared, niced, 1 thread)", len(log), "steps",
            note=f"{seconds / 3600:.2f} h of step time"),
        *(row(f"held-back single facts: accuracy, {arm}", value, "", note=f"{len(docs)} documents")
          for arm, value in accuracy.items()),
        *(row(f"own-document adapter vs {arm}: sign test p (gained/lost)", t["p"], "", f"< {ALPHA}", t["p"] < ALPHA,
              f"{t['gained']} gained, {t['lost']} lost") for arm, t in result["tests"].items()),
        row("gate a (pilot) passed", "yes" if result["passed"] else "no", "", "yes", result["passed"],
            f"curve: benchmarks/{png.name}"),
    ]  # fmt: skip
    network = engine.net.config
    data = {
        "run": str(args.run),
        "heldout": str(args.heldout),
        "heldout_manifest": heldout.manifest,
        "network": network.to_json(),
        "gate": result,
        "accuracy": accuracy,
        "examples": [
            {"document": d.text, "question": d.qa[0][0], "answers": d.qa[0][1], **{a: r[i] for a, r in replies.items()}}
            for i, d in enumerate(docs)
        ],
        "curve": [{k: r.get(k) for k in ("step", "kl", "interference", "seconds")} for r in log],
    }
    write_result(f"hypernet_gate_{name}", rows, data)
    print("\n".join(f"{r['metric']}: {r['value']} {r['note']}" for r in rows))


if __name__ == "__main__":
    main()
