"""Generation speed of the embedded model: prefill and decode tokens/s, per decode path, adapter state and threads.

Paths:
- reference: plain transformers `model.generate` (greedy), timed with a streamer at every new token;
- loop: loracle's decode loop with decoder="transformers" (the model's own forward, dynamic KV cache);
- lean: loracle's lean Llama step (static KV cache, no per-step bookkeeping), fp32 weights;
- lean-fp16: the lean step reading fp16-packed weights (the "auto" choice for longer generations).
Adapter states: none; one LoRA adapter (r=8 on all seven projections) applied unmerged through PEFT; merged.
Threads: 1 and 2.

Each configuration decodes exactly --tokens new tokens (stop tokens are suppressed) after a ~200-token prompt
(the sample document and a question). Trials are interleaved (trial -> path -> adapter -> threads) so that the
shared machine's noise spreads over all configurations; each figure is the median over trials, and every
ratio is taken within a trial and then its median reported. Decode is also reported per CPU-second of this
process (steadier than wall time while other jobs share the cores). Packing fp16 weights is timed once per model
(setup time, outside the prefill and decode figures). Trial 0 always runs
completely; after --budget-s seconds the later trials stop where they are.

Two threads are measured with OMP_WAIT_POLICY=PASSIVE (set by `import loracle`): with OpenMP's default spinning
workers, two threads were 15-35x slower than one on the busy 2-core VM.

Run: .venv/bin/python -m benchmarks.generate [--trials 3] [--tokens 12] [--budget-s 300]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import machine_info, row, write_result
from loracle.demo import sample_dir
from loracle.eval.qa import load_qa
from loracle.model import GenerationConfig, LoadedModel, apply_adapters, encode_chat, load_model, question_messages
from loracle.model.chat import stop_token_ids
from loracle.model.generate import stream_ids
from loracle.sources import read_document

if TYPE_CHECKING:
    import torch

PATHS = ("reference", "loop", "lean", "lean-fp16")
ADAPTERS = ("none", "unmerged", "merged")
THREADS = (1, 2)
TARGET_DECODE = 25.0
TARGET_ADAPTER_COST = 0.10
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class TokenClock:
    """A `model.generate` streamer that notes the time of every new token (the first put() is the prompt)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.times.append(time.perf_counter())
        self.cpu_times.append(time.process_time())

    def end(self) -> None:
        pass


def prompt_ids(lm: LoadedModel) -> list[int]:
    folder = sample_dir()
    item = load_qa(folder / "questions.jsonl")[0]
    document = read_document(folder / item.docs[0]).text
    return encode_chat(lm.tokenizer, question_messages(item.question, document))


def copied(lm: LoadedModel) -> LoadedModel:
    """The same loaded model with its own copy of the weights (adapters applied to it leave `lm` alone)."""
    return dataclasses.replace(lm, model=copy.deepcopy(lm.model))


def make_adapter(
    lm: LoadedModel,
    folder: Path,
    seed: int = 0,
    r: int = 8,
    targets: list[str] | None = None,
    layers: list[int] | None = None,
) -> Path:
    """A real PEFT LoRA adapter for the embedded model, with non-zero B so that it changes the output: rank `r`
    (alpha 2r) on `targets` (default: all seven projections) of `layers` (default: all)."""
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets or LORA_TARGETS, layers_to_transform=layers)
    peft_model = get_peft_model(copy.deepcopy(lm.model), config)
    torch.manual_seed(seed)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.01)
    # named for the model it was made for, not the converted-model cache folder it was loaded from
    peft_model.peft_config["default"].base_model_name_or_path = lm.name
    peft_model.save_pretrained(folder)
    return folder


def run_once(lm: LoadedModel, path: str, prompt: list[int], tokens: int) -> dict[str, float]:
    """Prefill and decode timings of one generation of exactly `tokens` new tokens."""
    import torch

    cpu = time.process_time()
    if path == "reference":
        clock = TokenClock()
        with torch.inference_mode():
            lm.model.generate(
                torch.tensor([prompt]),
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                do_sample=False,
                streamer=clock,
                pad_token_id=lm.tokenizer.pad_token_id,
            )
        prefill = clock.times[0] - clock.start
        decode = clock.times[-1] - clock.times[0]
        decode_cpu = clock.cpu_times[-1] - clock.cpu_times[0]
        setup = 0.0
    else:
        decoder = "transformers" if path == "loop" else path
        no_stop = {t: -1e9 for t in stop_token_ids(lm.tokenizer)}
        stream = stream_ids(lm, prompt, GenerationConfig(max_new_tokens=tokens, decoder=decoder, logit_bias=no_stop))
        stream.text()
        assert stream.stats.new_tokens == tokens and stream.stats.decoder == decoder
        prefill, decode, setup = stream.stats.prefill_s, stream.stats.decode_s, stream.stats.setup_s
        decode_cpu = stream.stats.decode_cpu_s
    return {
        "prefill_tok_s": len(prompt) / prefill,
        "decode_tok_s": (tokens - 1) / decode,
        "decode_tok_cpu_s": (tokens - 1) / decode_cpu,
        "setup_s": setup,
        "cpu_s": time.process_time() - cpu,
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def same_trial_ratio(
    runs: list[dict[str, Any]], by: tuple[str, str], threads: int, a: tuple[str, str], b: tuple[str, str], key: str
) -> float:
    """Median over trials of run a's `key` / run b's, both from the same trial and thread count, a run named by its
    values of the two fields `by` (trials measuring only one of them are skipped)."""
    values = []
    for trial in sorted({r["trial"] for r in runs}):
        here = {(r[by[0]], r[by[1]]): r[key] for r in runs if (r["trial"], r["threads"]) == (trial, threads)}
        if a in here and b in here:
            values.append(here[a] / here[b])
    return median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=12, help="new tokens per generation")
    parser.add_argument("--budget-s", type=float, default=300, help="after this many seconds only trial 0 goes on")
    args = parser.parse_args()
    import torch  # imported here, after loracle, which sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP

    machine = machine_info()
    started = time.perf_counter()

    torch.set_num_threads(1)
    base = load_model("embedded")

    with tempfile.TemporaryDirectory() as tmp:
        adapter = make_adapter(base, Path(tmp) / "adapter")
        models = {
            "none": base,
            "unmerged": apply_adapters(copied(base), [adapter]),
            "merged": apply_adapters(copied(base), [adapter], merge=True),
        }
    prompt = prompt_ids(base)
    run_once(base, "reference", prompt, 2)  # warm-up: first-call initialisation of the kernels

    runs: list[dict[str, Any]] = []
    pack_s: dict[str, float] = {}  # the first lean-fp16 generation of each model packs its weights
    for trial in range(args.trials):
        for path in PATHS:
            for name in ADAPTERS:
                for threads in THREADS:
                    if trial > 0 and time.perf_counter() - started > args.budget_s:
                        continue  # out of time: later trials stay partial (ratios use complete pairs only)
                    torch.set_num_threads(threads)
                    result = run_once(models[name], path, prompt, args.tokens)
                    if path == "lean-fp16" and name not in pack_s:
                        pack_s[name] = result["setup_s"]
                    runs.append({"trial": trial, "threads": threads, "path": path, "adapter": name, **result})
                    print(
                        f"trial {trial} threads {threads} {path:9} {name:8} prefill {result['prefill_tok_s']:6.1f} "
                        f"decode {result['decode_tok_s']:5.1f} tok/s",
                        flush=True,
                    )
    torch.set_num_threads(1)
    rows, summary = summarise(runs, pack_s, args.tokens)
    data = {
        "prompt_tokens": len(prompt),
        "new_tokens": args.tokens,
        "trials": len({r["trial"] for r in runs}),
        "lora": {"r": 8, "alpha": 16, "targets": LORA_TARGETS},
        "fp16_pack_s": pack_s,
        "summary": summary,
        "runs": runs,
        "load_avg_1m_at_end": os.getloadavg()[0],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "wall_s": time.perf_counter() - started,
    }
    path = write_result("generate", rows, data, machine)
    print(f"wrote {path}")


def summarise(
    runs: list[dict[str, Any]], pack_s: dict[str, float], tokens: int
) -> tuple[list[dict], dict[str, dict[str, float]]]:
    def pick(threads: int, path: str, adapter: str, key: str) -> list[float]:
        return [r[key] for r in runs if r["threads"] == threads and r["path"] == path and r["adapter"] == adapter]

    def ratio(threads: int, a: tuple[str, str], b: tuple[str, str], key: str = "decode_tok_s") -> float:
        """Median over trials of a/b, (path, adapter) pairs from the same trial."""
        return same_trial_ratio(runs, ("path", "adapter"), threads, a, b, key)

    def adapter_cost_row(metric: str, threads: int, path: str, adapter: str, key: str) -> dict:
        """1 - decode speed with the adapter / without it, same trial; the target applies to lean-fp16 only."""
        cost = 1 - ratio(threads, (path, adapter), (path, "none"), key)
        target = path == "lean-fp16"
        return row(
            metric,
            cost,
            "fraction of decode speed",
            f"<= {TARGET_ADAPTER_COST:g}" if target else "",
            cost <= TARGET_ADAPTER_COST if target else None,
            "1 - with/without, same trial",
        )

    summary = {
        f"{threads}t/{path}/{adapter}": {
            "prefill_tok_s": median(pick(threads, path, adapter, "prefill_tok_s")),
            "decode_tok_s": median(pick(threads, path, adapter, "decode_tok_s")),
            "decode_tok_cpu_s": median(pick(threads, path, adapter, "decode_tok_cpu_s")),
        }
        for threads in THREADS
        for path in PATHS
        for adapter in ADAPTERS
    }
    best_threads = max(THREADS, key=lambda t: summary[f"{t}t/lean-fp16/none"]["decode_tok_s"])
    best = summary[f"{best_threads}t/lean-fp16/none"]["decode_tok_s"]
    rows = [
        row(
            "decode, optimised (lean-fp16), no adapter",
            best,
            "tokens/s",
            f">= {TARGET_DECODE:g} on 2 cores",
            best >= TARGET_DECODE,
            f"median of trials, best thread count ({best_threads}); shared machine",
        )
    ]
    for threads in THREADS:
        for path in PATHS:
            cell = summary[f"{threads}t/{path}/none"]
            rows.append(
                row(f"decode, {path}, {threads} thread(s)", cell["decode_tok_s"], "tokens/s", note="no adapter")
            )
    for threads in THREADS:
        for path in PATHS:
            rows.append(
                row(
                    f"prefill, {path}, {threads} thread(s)",
                    summary[f"{threads}t/{path}/none"]["prefill_tok_s"],
                    "tokens/s",
                )
            )
    for threads in THREADS:
        for path in ("lean", "lean-fp16", "loop"):
            rows.append(
                row(
                    f"decode speed-up {path} / reference, {threads} thread(s)",
                    ratio(threads, (path, "none"), ("reference", "none")),
                    "x",
                    note="ratio within each trial, median",
                )
            )
    for threads in THREADS:
        for path in PATHS:
            for adapter in ("unmerged", "merged"):
                metric = f"adapter cost, {adapter}, {path}, {threads} thread(s)"
                rows.append(adapter_cost_row(metric, threads, path, adapter, "decode_tok_s"))
    # CPU time counts only this process's work, so it is far less disturbed by the other jobs on a shared machine
    for path in PATHS:
        rows.append(
            row(
                f"decode by CPU time, {path}, 1 thread",
                summary[f"1t/{path}/none"]["decode_tok_cpu_s"],
                "tokens per CPU-second",
                note="no adapter",
            )
        )
    for path in ("lean", "lean-fp16", "loop"):
        rows.append(
            row(
                f"decode speed-up by CPU time {path} / reference, 1 thread",
                ratio(1, (path, "none"), ("reference", "none"), "decode_tok_cpu_s"),
                "x",
                note="ratio within each trial, median",
            )
        )
    for path in PATHS:
        for adapter in ("unmerged", "merged"):
            metric = f"adapter cost by CPU time, {adapter}, {path}, 1 thread"
            rows.append(adapter_cost_row(metric, 1, path, adapter, "decode_tok_cpu_s"))
    for path in PATHS:
        rows.append(
            row(
                f"threads: 2 / 1 decode speed, {path}",
                median(
                    [
                        two["decode_tok_s"] / one["decode_tok_s"]
                        for one in runs
                        for two in runs
                        if (one["threads"], two["threads"]) == (1, 2)
                        and one["trial"] == two["trial"]
                        and one["path"] == two["path"] == path
                        and one["adapter"] == two["adapter"] == "none"
                    ]
                ),
                "x",
                note="same trial; OMP_WAIT_POLICY=PASSIVE",
            )
        )
    lean_1t = summary["1t/lean/none"]["decode_tok_s"]
    fp16_1t = summary["1t/lean-fp16/none"]["decode_tok_s"]
    saved_per_token = 1 / lean_1t - 1 / fp16_1t
    rows.append(row("fp16 weight packing (once per model)", pack_s["none"], "s", note="first lean-fp16 generation"))
    rows.append(
        row(
            "fp16 packing pays off after",
            pack_s["none"] / saved_per_token if saved_per_token > 0 else float("inf"),
            "new tokens",
            note="pack time / time saved per token vs lean fp32, 1 thread",
        )
    )
    return rows, summary


if __name__ == "__main__":
    main()
