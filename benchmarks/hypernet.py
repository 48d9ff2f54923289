"""Doc-to-LoRA hypernetwork: internalisation time, adapter size, closed-book accuracy and forgetting.

- Internalisation time of a document vs one plain forward pass of the base model over the same tokens
  (batch 1, CPU, interleaved repeats, median ratio).
- Adapter size per 1,000-token chunk: the PEFT folder compile_document writes for a ~1,000-token document.
- On the fictional corpus (benchmarks/data/fictional, never used in training: training documents are
  generated with random names), the eval harness runs floor, in-context ceiling and the hypernet learner
  (and ttt with --ttt) with forgetting measured on its general set.

`--training` instead writes how the shipped checkpoint was trained (steps, data mix, time, the loss curve as
results/hypernet_training.json and hypernet_training.png), read from its meta.json; no model runs.

Run: nice -n 10 .venv/bin/python -m benchmarks.hypernet [--ttt] [--general N] | [--training]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import row, write_result
from loracle.documents import Document
from loracle.learners.hypernet.checkpoint import shipped_path
from loracle.learners.hypernet.curve import moving_average
from loracle.learners.hypernet.engine import DocToLora
from loracle.learners.hypernet.learner import HypernetLearner
from loracle.learners.hypernet.reading import doc_ids
from loracle.model import load_model
from loracle.model.embedded import EMBEDDED_NAME
from loracle.runtime import configure_threads

FICTIONAL = Path(__file__).parent / "data" / "fictional"
PNG = Path(__file__).parent / "hypernet_training.png"


def fictional_docs() -> list[Document]:
    from loracle.sources.files import read_document

    return [read_document(p) for p in sorted(FICTIONAL.glob("*.md"))]


def time_internalisation(engine: DocToLora, texts: list[str], repeats: int) -> dict:
    """Seconds to internalise each text vs one plain forward over its tokens, interleaved."""
    model = engine.lm.model
    rows = []
    for text in texts:
        ids = torch.tensor([doc_ids(engine.lm.tokenizer, text)])
        hyper, plain = [], []
        with torch.no_grad():
            model(input_ids=ids)  # warm-up
            engine.internalise(text)
            for _ in range(repeats):
                start = time.perf_counter()
                model(input_ids=ids)
                plain.append(time.perf_counter() - start)
                start = time.perf_counter()
                engine.internalise(text)
                hyper.append(time.perf_counter() - start)
        rows.append(
            {
                "tokens": ids.shape[1],
                "plain_forward_s": statistics.median(plain),
                "internalise_s": statistics.median(hyper),
                "ratio": statistics.median(h / p for h, p in zip(hyper, plain, strict=True)),
            }
        )
    return {"documents": rows, "median_ratio": statistics.median(r["ratio"] for r in rows)}


def adapter_size(learner: HypernetLearner, text: str) -> dict:
    doc = Document.from_text(text, title="size probe")
    with tempfile.TemporaryDirectory() as tmp:
        report = learner.compile_document(doc, Path(tmp) / "adapter")
    return {"tokens": report.tokens, "bytes": report.bytes_on_disk, "chunks": report.details["chunks"],
            "mb_per_1000_tokens": report.bytes_on_disk / 1e6 * 1000 / report.tokens}  # fmt: skip


def accuracy(lm, learners: list[str], general: int, max_new_tokens: int, docs: int) -> dict:
    from loracle.eval.harness import EvalSettings
    from loracle.eval.inputs import load_inputs
    from loracle.eval.run import evaluate

    inputs = load_inputs(FICTIONAL, FICTIONAL / "qa.jsonl")
    if docs:  # the first `docs` documents (sorted by name) and their questions, for a shorter run
        keep = sorted(inputs.docs)[:docs]
        inputs.docs = {k: inputs.docs[k] for k in keep}
        inputs.items = [item for item in inputs.items if all(d in inputs.docs for d in item.docs)]
    settings = EvalSettings(
        max_new_tokens=max_new_tokens,
        general=general > 0,
        general_knowledge_max=general,
        general_reading_max=max(1, general // 2),
    )
    options = {"hypernet": {"max_new_tokens": max_new_tokens}}
    result = evaluate(lm, inputs, learners, options, settings=settings, progress=lambda m: print(m, flush=True))
    return result.to_dict()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ttt", action="store_true", help="also run the ttt learner (equal wall-clock: see notes)")
    parser.add_argument("--general", type=int, default=12, help="general-set knowledge items for forgetting (0 = off)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--docs", type=int, default=0, help="only the first N fictional documents (0 = all)")
    parser.add_argument("--training", action="store_true", help="only how the shipped checkpoint was trained")
    args = parser.parse_args()
    if args.training:
        training_record()
        return
    configure_threads(args.threads)
    lm = load_model("embedded")
    learner = HypernetLearner(lm)
    engine = learner.engine
    docs = fictional_docs()
    long_text = "\n\n".join(d.text for d in docs)
    long_ids = doc_ids(lm.tokenizer, long_text)[:1000]
    thousand = lm.tokenizer.decode(long_ids)

    timing = time_internalisation(engine, [docs[0].text, thousand], args.repeats)
    size = adapter_size(learner, thousand)
    print("timing", timing, "size", size, flush=True)
    evaluation = accuracy(lm, ["hypernet", *(["ttt"] if args.ttt else [])], args.general, 24, args.docs)
    runs = {r["name"]: r for r in evaluation["runs"]}
    floor, ceiling, hyper = (runs[n]["accuracy"] for n in ("floor", "ceiling", "hypernet"))
    of_ceiling = hyper / ceiling if ceiling else None
    forgetting = runs["hypernet"].get("forgetting_ratio")

    rows = [
        row("internalisation time / plain forward (median over docs)", timing["median_ratio"], "x", "<= 1.5",
            timing["median_ratio"] <= 1.5, f"docs of {[d['tokens'] for d in timing['documents']]} tokens, batch 1"),
        row("adapter size per 1,000-token chunk (fp32, incl. bias LoRA)", size["mb_per_1000_tokens"], "MB", "<= 5",
            size["mb_per_1000_tokens"] <= 5),
        row("closed-book accuracy: floor (no document)", floor, "", note=f"{runs['floor']['total']} questions"),
        row("closed-book accuracy: ceiling (document in context)", ceiling, ""),
        row("closed-book accuracy: hypernet", hyper, "", note=runs["hypernet"].get("error") or ""),
        row("hypernet accuracy / ceiling", of_ceiling if of_ceiling is not None else "n/a", "", ">= 0.5",
            of_ceiling is not None and of_ceiling >= 0.5),
        row("forgetting ratio (general set)", forgetting if forgetting is not None else "n/a", "", "<= 0.05",
            forgetting is not None and forgetting <= 0.05),
    ]  # fmt: skip
    if "ttt" in runs:
        t = runs["ttt"]
        rows.append(row("closed-book accuracy: ttt", t.get("accuracy") or 0.0, "",
                        note=f"learn {t.get('learn_seconds_per_doc')} s/doc vs hypernet "
                        f"{runs['hypernet'].get('learn_seconds_per_doc')} s/doc; {t.get('error') or ''}"))  # fmt: skip
    write_result("hypernet", rows, {"timing": timing, "adapter_size": size, "eval": evaluation})


def training_record() -> None:
    """results/hypernet_training.json and its PNG: how the shipped checkpoint was trained, from the history the
    trainer stored in its meta.json (nothing typed by hand)."""
    folder = shipped_path(EMBEDDED_NAME)
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    history = meta["history"]
    kl = [h["kl"] for h in history]
    window = max(1, min(20, len(kl) // 4))
    smooth = moving_average(kl, window)
    seconds = sum(h["seconds"] for h in history)
    kinds = {k: sum(h["kind"] == k for h in history) for k in sorted({h["kind"] for h in history})}
    size = (folder / "tensors.safetensors").stat().st_size
    first, last = statistics.fmean(kl[:window]), statistics.fmean(kl[-window:])
    rows = [
        row("training steps (one document, up to 4 questions each)", len(history), "steps"),
        row("training wall time (CPU, shared machine, niced, 1 thread)", seconds / 60, "min"),
        row(f"KL, mean of the first {window} steps", first, "nats/token"),
        row(f"KL, mean of the last {window} steps", last, "nats/token", note="different documents every step"),
        row("shipped checkpoint size (fp16)", size / 1e6, "MB", "tens of MB at most", size < 50e6),
    ]
    data = {
        "checkpoint": str(folder.relative_to(Path(__file__).parent.parent / "src")),
        "commands": meta.get("commands", []),
        "train_config": meta.get("train_config"),
        "hypernet": meta.get("hypernet"),
        "documents_by_kind": kinds,
        "history": history,
    }
    write_result("hypernet_training", rows, data)
    plot(kl, smooth, window)


def plot(kl: list[float], smooth: list[float], window: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = range(1, len(kl) + 1)
    ax.plot(steps, kl, alpha=0.35, label="KL per step")
    ax.plot(steps, smooth, label=f"moving average ({window} steps)")
    ax.set_xlabel("step")
    ax.set_ylabel("KL(teacher top-k || student), nats/token")
    ax.set_title("Doc-to-LoRA hypernetwork: context distillation on CPU")
    ax.legend()
    fig.tight_layout()
    fig.savefig(PNG, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
