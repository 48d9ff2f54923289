"""Gate a (pilot) of a hypernetwork design: on held-back single-fact documents, do its adapters carry the fact?

Each held-back document (`loracle hypernet-data --kinds single:100 --seed 1000`, a seed training never uses) is
one invented fact and one question whose answer is an invented name or number. Every question is answered
closed-book four ways: floor (no adapter), the adapter generated from its own document (a LoRA, or for the
memory-token design a prefix cache), the adapter the same network generates from another held-back document (a
fixed derangement: a generic prior that helps whatever the document cannot pass this), and, for scale, the
document in context (the ceiling). The design passes when its own-document answers beat both the floor and the
shuffled ones, one-sided sign test p < 0.01 each. The run's learning curve (its train.jsonl, with the held-out KL
where it was logged) is drawn beside the result. For a prefix run, the first documents' own-document answers are
also given by PEFT itself, loading the exported adapter folder (`--peft-check N`), and must be the same text.

Run: nice -n 19 .venv/bin/python -m benchmarks.hypernet_gate --run RUN_DIR --heldout DATA_DIR --name pilot-small
"""

from __future__ import annotations

import argparse
import random
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.ablate import sign_test
from benchmarks.common import row, write_result
from loracle.eval.scoring import is_correct
from loracle.learners.hypernet.checkpoint import checkpoint_folder, load_hypernet
from loracle.learners.hypernet.curve import plot_curve, read_heldout, read_log
from loracle.learners.hypernet.dataset import CachedDoc, TrainingSet
from loracle.learners.hypernet.engine import DocToLora
from loracle.learners.hypernet.prefix import MemoryCompressor, prefixed_states
from loracle.learners.hypernet.prefix_engine import DocToPrefix
from loracle.learners.hypernet.reading import student_prompt
from loracle.learners.hypernet.train import kl_terms
from loracle.learners.lora import Lora, hooked
from loracle.model import GenerationConfig, LoadedModel, encode_chat, generate_chat, question_messages
from loracle.model.batch import greedy_batch
from loracle.model.chat import stop_token_ids

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


def answer_all(engine: DocToLora | DocToPrefix, docs: Sequence[CachedDoc], max_new_tokens: int) -> dict[str, list[str]]:
    """Each document's first question answered four ways (floor, ceiling, own adapter, shuffled adapter)."""
    lm = engine.lm
    questions = [doc.qa[0][0] for doc in docs]
    floor = greedy_batch(lm, [encode_chat(lm.tokenizer, question_messages(q)) for q in questions], max_new_tokens)
    ceiling = greedy_batch(
        lm, [encode_chat(lm.tokenizer, question_messages(q, d.text)) for q, d in zip(questions, docs, strict=True)],
        max_new_tokens,
    )  # fmt: skip
    other = derangement(len(docs))
    if isinstance(engine, DocToPrefix):
        caches = [engine.internalise(doc.text) for doc in docs]
        own = [engine.answer(q, caches[i], max_new_tokens) for i, q in enumerate(questions)]
        shuffled = [engine.answer(q, caches[other[i]], max_new_tokens) for i, q in enumerate(questions)]
    else:
        adapters = [engine.combine(engine.internalise(doc.text)) for doc in docs]
        own = [closed_book(lm, q, adapters[i], max_new_tokens) for i, q in enumerate(questions)]
        shuffled = [closed_book(lm, q, adapters[other[i]], max_new_tokens) for i, q in enumerate(questions)]
    return {"floor": floor, "ceiling": ceiling, "own document": own, "shuffled document": shuffled}


def load_engine(lm: LoadedModel, run: Path) -> tuple[DocToLora | DocToPrefix, dict[str, Any]]:
    """The run's network at use time, whichever design it is, and its checkpoint's record (its `step`)."""
    net, meta, _ = load_hypernet(checkpoint_folder(run, lm.name), lm.fingerprint)
    return (DocToPrefix(lm, net) if isinstance(net, MemoryCompressor) else DocToLora(lm, net)), meta


def peft_greedy(model: torch.nn.Module, prompt: Sequence[int], max_new_tokens: int, stops: set[int]) -> list[int]:
    """Greedy decoding by the model's own forward over the growing sequence, no cache: how a PEFT prefix adapter
    is run here, since `PeftModel.generate` drops the prefix with transformers 5 (see test_hypernet_prefix.py)."""
    seq = list(prompt)
    device = next(model.parameters()).device
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            ids = torch.tensor([seq], device=device)
            token = int(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1].argmax())
            if token in stops:
                break
            seq.append(token)
    return seq[len(prompt) :]


def peft_replies(engine: DocToPrefix, docs: Sequence[CachedDoc], max_new_tokens: int, folder: Path) -> list[str]:
    """Each document's first question answered by PEFT itself, loading the document's exported prefix adapter."""
    from peft import PeftModel

    lm = engine.lm
    stops = stop_token_ids(lm.tokenizer)
    replies = []
    for number, doc in enumerate(docs):
        adapter = folder / f"doc-{number}"
        engine.export(engine.internalise(doc.text), adapter, {"doc_id": f"heldout-{number}"})
        model = PeftModel.from_pretrained(lm.model, str(adapter))
        tokens = peft_greedy(model, student_prompt(lm.tokenizer, doc.qa[0][0]), max_new_tokens, stops)
        replies.append(lm.tokenizer.decode(tokens, skip_special_tokens=True).strip())
    return replies


def answer_kl(engine: DocToLora | DocToPrefix, docs: Sequence[CachedDoc]) -> dict[str, list[float]]:
    """Per document, the KL (teacher top-k with the document in context || student) over its first answer, nats a
    token, closed-book three ways: no adapter, its own document's adapter, another document's (the derangement).
    Finer than exact match: own below shuffled says the adapter carries something of its document."""
    lm = engine.lm
    model = lm.model
    decoder = getattr(model, model.base_model_prefix)
    other = derangement(len(docs))
    if isinstance(engine, DocToPrefix):
        caches = [engine.internalise(doc.text) for doc in docs]

        def with_adapter(i: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
            return lambda ids, mask: prefixed_states(model, caches[i], ids, mask)
    else:
        adapters = [engine.combine(engine.internalise(doc.text)) for doc in docs]

        def with_adapter(i: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
            def states(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
                with hooked(model, adapters[i]):
                    return decoder(input_ids=ids, attention_mask=mask).last_hidden_state

            return states

    def plain(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return decoder(input_ids=ids, attention_mask=mask).last_hidden_state

    arms: dict[str, list[float]] = {"floor": [], "own document": [], "shuffled document": []}
    with torch.no_grad():
        for i, doc in enumerate(docs):
            target = [doc.targets[0]]
            for arm, states_of in (("floor", plain), ("own document", with_adapter(i)),
                                   ("shuffled document", with_adapter(other[i]))):  # fmt: skip
                arms[arm].append(kl_terms(lm, target, states_of)[0].mean().item())
    return arms


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
    parser.add_argument("--peft-check", type=int, default=10, help="prefix runs: documents also answered by PEFT")
    args = parser.parse_args()
    configure_threads(args.threads)
    lm = load_model("embedded")
    heldout = TrainingSet.load(args.heldout, lm.fingerprint)
    docs = [d for d in heldout.docs if d.kind == "single"][: args.limit or None]
    engine, meta = load_engine(lm, args.run)
    replies = answer_all(engine, docs, args.max_new_tokens)
    correct = verdicts(docs, replies)
    result = gate(correct)
    # only the steps the gated network took: a run stopped between checkpoints logged more
    trained, step = args.run / "train.jsonl", meta.get("step")
    log, heldout_log = read_log(trained, step), read_heldout(trained, step)
    name = args.name.replace("-", "_")
    png = Path(__file__).parent / f"hypernet_gate_{name}.png"
    plot_curve(log, png, title=f"Hypernetwork pilot '{args.name}': context distillation on CPU", heldout=heldout_log)
    design_rows = []
    if isinstance(engine, DocToPrefix):
        checked = docs[: args.peft_check]
        with tempfile.TemporaryDirectory() as folder:
            by_peft = peft_replies(engine, checked, args.max_new_tokens, Path(folder))
        same = sum(a == b for a, b in zip(by_peft, replies["own document"], strict=False))
        design_rows = [
            row("prefix adapter size per document (fp32)", engine.net.config.adapter_bytes() / 1e6, "MB",
                note=f"{engine.net.config.memory_tokens} memory tokens"),
            row("own-document answers PEFT gives loading the exported adapter, same text", same, "",
                f"= {len(checked)}", same == len(checked), f"of the first {len(checked)} documents"),
        ]  # fmt: skip
        result["peft_same"] = {"checked": len(checked), "same": same}
    accuracy = {arm: sum(v) / len(v) for arm, v in correct.items()}
    kls = answer_kl(engine, docs)
    mean_kl = {arm: sum(v) / len(v) for arm, v in kls.items()}
    lower = sign_test([a < b for a, b in zip(kls["own document"], kls["shuffled document"], strict=True)],
                      [a > b for a, b in zip(kls["own document"], kls["shuffled document"], strict=True)])  # fmt: skip
    kl_rows = [
        *(row(f"held-back single facts: KL on the answer, {arm}", value, "nats/token", note=f"{len(docs)} documents")
          for arm, value in mean_kl.items()),
        row("own-document KL below shuffled-document KL: sign test p (lower/higher)", lower["p"], "",
            note=f"{lower['gained']} lower, {lower['lost']} higher (a diagnostic, not the gate)"),
    ]  # fmt: skip
    seconds = sum(r["seconds"] for r in log)
    cpu = sum(r.get("cpu_seconds", 0.0) for r in log)  # logs before it was recorded have none
    rows = [
        row("training steps / wall time (CPU, shared, niced, 1 thread)", len(log), "steps",
            note=f"{seconds / 3600:.2f} h of step time" + (f", {cpu / 3600:.2f} CPU-h" if cpu else "")),
        *(row(f"held-back single facts: accuracy, {arm}", value, "", note=f"{len(docs)} documents")
          for arm, value in accuracy.items()),
        *(row(f"own-document adapter vs {arm}: sign test p (gained/lost)", t["p"], "", f"< {ALPHA}", t["p"] < ALPHA,
              f"{t['gained']} gained, {t['lost']} lost") for arm, t in result["tests"].items()),
        *kl_rows,
        *design_rows,
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
        "answer_kl": mean_kl,
        "answer_kl_sign_test": lower,
        "examples": [
            {
                "document": d.text,
                "question": d.qa[0][0],
                "answers": d.qa[0][1],
                **{a: r[i] for a, r in replies.items()},
                "kl": {a: k[i] for a, k in kls.items()},
            }
            for i, d in enumerate(docs)
        ],
        "curve": [{k: r.get(k) for k in ("step", "kl", "interference", "seconds")} for r in log],
        "heldout_curve": heldout_log,
    }
    write_result(f"hypernet_gate_{name}", rows, data)
    print("\n".join(f"{r['metric']}: {r['value']} {r['note']}" for r in rows))


if __name__ == "__main__":
    main()
