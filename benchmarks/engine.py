"""The OpenVINO engine against torch's fastest path (lean-fp16) on the embedded model, in one run.

Measured:
- decode and prefill tokens/s, engine and lean-fp16 interleaved (trial -> threads -> adapter -> engine), each
  generation exactly --tokens new tokens (stop tokens suppressed) after a ~250-token prompt; ratios are taken
  within a trial and their median reported, so the shared machine's noise hits both sides alike;
- the cost of one applied adapter, 1 - with/without, same trial: r=8 on all seven projections of every layer
  (unmerged PEFT), and an adapter of the ttt learner's shape (r=32 on the down projections of the upper
  quarter of the layers);
- switching adapters per request: the setup of a generation whose adapter differs from the previous one's;
- greedy agreement with torch's fp32 lean step over --prompts prompts (fictional and sample questions, the first
  --with-document of them with their document), without and with the adapter: the tokens before the first
  difference, over all tokens torch generated (a strict measure: everything after a near-tie flip counts as
  disagreement); lean-fp16 against the same reference for scale;
- tracing the model for the engine (once per base weights), into a fresh cache folder.

Run: .venv/bin/python -m benchmarks.engine [--trials 3] [--tokens 64] [--prompts 50] [--agree-tokens 24]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import machine_info, row, write_result
from benchmarks.generate import copied, make_adapter, median, prompt_ids, same_trial_ratio
from loracle.demo import sample_dir
from loracle.eval.qa import load_qa
from loracle.model import GenerationConfig, LoadedModel, apply_adapters, encode_chat, load_model, question_messages
from loracle.model.cache import CACHE_ENV
from loracle.model.chat import stop_token_ids
from loracle.model.engine import THREADS_ENV, select_engine
from loracle.model.generate import stream_ids
from loracle.sources import read_document

FICTIONAL = Path(__file__).parent / "data" / "fictional"
THREADS = (1, 2)
TARGET_DECODE_RATIO, TARGET_DECODE, TARGET_PREFILL_RATIO = 2.5, 60.0, 1.5
TARGET_ADAPTER_COST, TARGET_SWITCH_MS, TARGET_AGREEMENT, TARGET_TRACE_S = 0.10, 50.0, 0.95, 300.0
#: (engine, decoder) per side; the engine is used only by decoder "auto"
SIDES = {"lean-fp16": ("torch", "lean-fp16"), "engine": ("openvino", "auto")}


def agreement_prompts(lm: LoadedModel, count: int, with_document: int) -> list[list[int]]:
    """Chat prompts of questions: the fictional set's, then the sample's; the first `with_document` with their text."""
    items = [(json.loads(line), FICTIONAL) for line in (FICTIONAL / "qa.jsonl").read_text().splitlines() if line]
    questions = [(item["q"], folder / item["doc"]) for item, folder in items]
    questions += [(item.question, sample_dir() / item.docs[0]) for item in load_qa(sample_dir() / "questions.jsonl")]
    prompts = []
    for index, (question, doc) in enumerate(questions[:count]):
        document = read_document(doc).text if index < with_document else None
        prompts.append(encode_chat(lm.tokenizer, question_messages(question, document)))
    return prompts


def greedy_tokens(lm: LoadedModel, side: str | None, prompt: list[int], tokens: int) -> list[int]:
    """The greedy reply's token ids (a final -1 if it stopped), from `side` or torch's fp32 lean step (None)."""
    engine, decoder = SIDES[side] if side else ("torch", "lean")
    select_engine(engine)
    stream = stream_ids(lm, prompt, GenerationConfig(max_new_tokens=tokens, decoder=decoder, logprobs=0))
    stream.text()
    ids = [entry.token for entry in stream.stats.token_logprobs]
    return [*ids, -1] if stream.stats.stopped else ids


def agreement(reference: list[list[int]], other: list[list[int]]) -> float:
    """Tokens before the first difference, over all reference tokens."""
    same = 0
    for ref, out in zip(reference, other, strict=True):
        same += next((i for i, (a, b) in enumerate(zip(ref, out, strict=False)) if a != b), min(len(ref), len(out)))
    return same / max(1, sum(len(r) for r in reference))


def timed(lm: LoadedModel, side: str, prompt: list[int], tokens: int) -> dict[str, float]:
    engine, decoder = SIDES[side]
    select_engine(engine)
    no_stop = {t: -1e9 for t in stop_token_ids(lm.tokenizer)}
    stream = stream_ids(lm, prompt, GenerationConfig(max_new_tokens=tokens, decoder=decoder, logit_bias=no_stop))
    stream.text()
    stats = stream.stats
    assert stats.new_tokens == tokens and stats.decoder == ("openvino" if side == "engine" else decoder)
    return {
        "prefill_tok_s": stats.prefill_tokens_per_s,
        "decode_tok_s": stats.decode_tokens_per_s,
        "decode_tok_cpu_s": (tokens - 1) / stats.decode_cpu_s if stats.decode_cpu_s > 0 else float("nan"),
        "setup_s": stats.setup_s,
        "load_1m": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per timed generation")
    parser.add_argument("--prompts", type=int, default=50, help="prompts for the agreement check")
    parser.add_argument("--with-document", type=int, default=10, help="of them, how many carry their document")
    parser.add_argument("--agree-tokens", type=int, default=24, help="new tokens per agreement generation")
    parser.add_argument("--switches", type=int, default=10)
    args = parser.parse_args()
    import torch  # after loracle, which sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP

    machine = machine_info()
    started = time.perf_counter()
    torch.set_num_threads(1)
    base = load_model("embedded")
    scratch = tempfile.TemporaryDirectory()
    os.environ[CACHE_ENV] = scratch.name  # the engine traces into a fresh cache: its time is measured below
    folders = [make_adapter(base, Path(scratch.name) / f"adapter{i}", seed=i) for i in range(2)]
    adapted = apply_adapters(copied(base), folders[:1])
    adapted.model.load_adapter(str(folders[1]), adapter_name="other")
    layers = base.model.config.num_hidden_layers
    upper = list(range(layers - layers // 4, layers))
    ttt_folder = make_adapter(base, Path(scratch.name) / "ttt", seed=2, r=32, targets=["down_proj"], layers=upper)
    ttt_shaped = apply_adapters(copied(base), [ttt_folder])
    models = {"none": base, "adapter": adapted, "ttt-shape": ttt_shaped}
    prompt = prompt_ids(base)

    trace_s = timed(base, "engine", prompt, 2)["setup_s"]
    print(f"traced for the engine in {trace_s:.1f} s", flush=True)
    for lm in (adapted, ttt_shaped):  # compiles the model with the slots each adapter uses, packs lean-fp16's weights
        timed(lm, "engine", prompt, 2)
        timed(lm, "lean-fp16", prompt, 2)
    timed(base, "lean-fp16", prompt, 2)

    runs: list[dict[str, Any]] = []
    for trial in range(args.trials):
        for threads in THREADS:
            torch.set_num_threads(threads)
            os.environ[THREADS_ENV] = str(threads)
            for adapter, lm in models.items():
                for side in SIDES:
                    result = timed(lm, side, prompt, args.tokens)
                    runs.append({"trial": trial, "threads": threads, "adapter": adapter, "side": side, **result})
                    print(json.dumps(runs[-1]), flush=True)
    torch.set_num_threads(1)
    os.environ[THREADS_ENV] = "1"

    switch_ms = []
    for index in range(args.switches):
        adapted.model.set_adapter("other" if index % 2 else "a0")
        switch_ms.append(1000 * timed(adapted, "engine", prompt[:8], 2)["setup_s"])
    base_setup_ms = [1000 * timed(base, "engine", prompt[:8], 2)["setup_s"] for _ in range(args.switches)]
    adapted.model.set_adapter("a0")
    print(f"adapter switch {median(switch_ms):.1f} ms (no adapter: {median(base_setup_ms):.1f} ms)", flush=True)

    prompts = agreement_prompts(base, args.prompts, args.with_document)
    agree: dict[str, float] = {}
    for adapter, lm in (("none", base), ("adapter", adapted)):
        reference = [greedy_tokens(lm, None, p, args.agree_tokens) for p in prompts]
        for side in SIDES:
            outputs = [greedy_tokens(lm, side, p, args.agree_tokens) for p in prompts]
            agree[f"{side}/{adapter}"] = agreement(reference, outputs)
            print(f"agreement {side} {adapter}: {agree[f'{side}/{adapter}']:.3f}", flush=True)
    select_engine("torch")

    rows = summarise(runs, trace_s, switch_ms, base_setup_ms, agree, len(prompts))
    data = {
        "prompt_tokens": len(prompt),
        "new_tokens": args.tokens,
        "agreement": {"prompts": len(prompts), "with_document": args.with_document, "tokens": args.agree_tokens},
        "adapter": {"r": 8, "alpha": 16, "targets": "all seven projections", "applied": "unmerged PEFT"},
        "ttt_shaped_adapter": {"r": 32, "alpha": 64, "targets": "down_proj", "layers": upper},
        "trace_s": trace_s,
        "switch_ms": switch_ms,
        "setup_ms_no_adapter": base_setup_ms,
        "agreement_rates": agree,
        "runs": runs,
        "load_avg_1m_at_end": os.getloadavg()[0],
        "wall_s": time.perf_counter() - started,
    }
    scratch.cleanup()
    print(f"wrote {write_result('engine', rows, data, machine)}")


def summarise(
    runs: list[dict[str, Any]],
    trace_s: float,
    switch_ms: list[float],
    base_setup_ms: list[float],
    agree: dict[str, float],
    prompts: int,
) -> list[dict]:
    def ratio(threads: int, a: tuple[str, str], b: tuple[str, str], key: str) -> float:
        """Median over trials of a/b, (adapter, side) pairs from the same trial and thread count."""
        return same_trial_ratio(runs, ("adapter", "side"), threads, a, b, key)

    def speed(threads: int, adapter: str, side: str, key: str) -> float:
        return median([r[key] for r in runs if (r["threads"], r["adapter"], r["side"]) == (threads, adapter, side)])

    def load(threads: int) -> str:
        return f"load {median([r['load_1m'] for r in runs if r['threads'] == threads]):.1f}"

    best = max(THREADS, key=lambda t: speed(t, "none", "engine", "decode_tok_s"))
    rows = []
    for threads in THREADS:
        decode_ratio = ratio(threads, ("none", "engine"), ("none", "lean-fp16"), "decode_tok_s")
        prefill_ratio = ratio(threads, ("none", "engine"), ("none", "lean-fp16"), "prefill_tok_s")
        cost = 1 - ratio(threads, ("adapter", "engine"), ("none", "engine"), "decode_tok_s")
        chosen = threads == best
        rows += [
            row(
                f"engine decode / lean-fp16, {threads} thread(s)",
                decode_ratio,
                "x",
                f">= {TARGET_DECODE_RATIO:g}" if chosen else "",
                decode_ratio >= TARGET_DECODE_RATIO if chosen else None,
                f"no adapter; same trial, median; {load(threads)}",
            ),
            row(
                f"engine decode, {threads} thread(s)",
                speed(threads, "none", "engine", "decode_tok_s"),
                "tokens/s",
                f">= {TARGET_DECODE:g}" if chosen else "",
                speed(threads, "none", "engine", "decode_tok_s") >= TARGET_DECODE if chosen else None,
                f"no adapter; lean-fp16 {speed(threads, 'none', 'lean-fp16', 'decode_tok_s'):.1f}; {load(threads)}",
            ),
            row(
                f"engine prefill / lean-fp16, {threads} thread(s)",
                prefill_ratio,
                "x",
                f">= {TARGET_PREFILL_RATIO:g}" if chosen else "",
                prefill_ratio >= TARGET_PREFILL_RATIO if chosen else None,
                f"engine {speed(threads, 'none', 'engine', 'prefill_tok_s'):.0f} tokens/s; {load(threads)}",
            ),
            row(
                f"engine adapter cost, {threads} thread(s)",
                cost,
                "fraction of decode speed",
                f"<= {TARGET_ADAPTER_COST:g}" if chosen else "",
                cost <= TARGET_ADAPTER_COST if chosen else None,
                "1 - with/without one adapter (r=8, 7 projections), same trial; by CPU time "
                f"{1 - ratio(threads, ('adapter', 'engine'), ('none', 'engine'), 'decode_tok_cpu_s'):.2f}",
            ),
            row(
                f"engine adapter cost, ttt's shape, {threads} thread(s)",
                1 - ratio(threads, ("ttt-shape", "engine"), ("none", "engine"), "decode_tok_s"),
                "fraction of decode speed",
                note="1 - with/without one adapter (r=32, down projections of the upper quarter), same trial; by CPU "
                f"time {1 - ratio(threads, ('ttt-shape', 'engine'), ('none', 'engine'), 'decode_tok_cpu_s'):.2f}",
            ),
            row(
                f"engine decode by CPU time / lean-fp16, {threads} thread(s)",
                ratio(threads, ("none", "engine"), ("none", "lean-fp16"), "decode_tok_cpu_s"),
                "x",
                note="tokens per CPU-second of this process, same trial",
            ),
        ]
    by_threads = {
        threads: {r["trial"]: r["decode_tok_s"] for r in runs if (r["threads"], r["side"], r["adapter"]) == key}
        for threads in THREADS
        for key in [(threads, "engine", "none")]
    }
    two_over_one = median([by_threads[2][t] / by_threads[1][t] for t in by_threads[1] if t in by_threads[2]])
    rows.append(row("engine threads: 2 / 1 decode speed", two_over_one, "x", note=f"same trial; best here: {best}"))
    switch = median(switch_ms)
    rows.append(
        row(
            "engine adapter switch per request",
            switch,
            "ms",
            f"<= {TARGET_SWITCH_MS:g}",
            switch <= TARGET_SWITCH_MS,
            f"setup of a generation whose adapter differs from the last; no adapter {median(base_setup_ms):.1f} ms",
        )
    )
    for adapter in ("none", "adapter"):
        rate = agree[f"engine/{adapter}"]
        rows.append(
            row(
                f"engine greedy agreement with torch, {'one adapter' if adapter == 'adapter' else 'no adapter'}",
                rate,
                "fraction of tokens",
                f">= {TARGET_AGREEMENT:g}",
                rate >= TARGET_AGREEMENT,
                f"{prompts} prompts; tokens before the first difference; "
                f"lean-fp16: {agree[f'lean-fp16/{adapter}']:.3f}",
            )
        )
    rows.append(
        row(
            "engine trace (once per base weights)",
            trace_s,
            "s",
            f"<= {TARGET_TRACE_S:g}",
            trace_s <= TARGET_TRACE_S,
            "trace, compress weights, compile; cached in the user's cache folder",
        )
    )
    return rows


if __name__ == "__main__":
    main()
