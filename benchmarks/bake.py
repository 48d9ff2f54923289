"""`loracle bake` on the embedded model: does the baked adapter, with no system prompt, behave as the model
does with the instruction as its system prompt, on prompts no bake trained on?

For each instruction (each one the 135M model follows, at least partly, when prompted):
- KL(teacher || student) per token over the teacher's greedy replies (48 tokens at most), the teacher being
  the base model with the instruction as its system message, the student the bare prompt asked of the base
  model and of the base model with the baked adapter (a plain PEFT load, merged);
- a task check a rule scores (share of replies in French or Spanish by stopwords; share that are one
  finished sentence) for the unprompted base, the prompted base and the baked model;
- forgetting: general-knowledge questions (loracle/data/general_knowledge.jsonl, 211) answered by the prompted
  base and by the baked model; forgetting = (prompted accuracy - baked accuracy) / prompted accuracy, with the
  answers lost and gained and a one-sided sign test of the losses;
- the bake's wall and CPU time.
Held-out prompts: the last 50 of the bundled general prompts (`loracle.bake.prompts.held_out_prompts`), which
no bake trains on (`training_prompts` drops them even if the model writes one); the script checks the two
sets are disjoint. `--sweep` instead compares variants (adapted modules, learning rate) on 10 dev prompts
(general prompts 60-69, the bakes trained on the first 59) and writes the bake_sweep ablation.

Run: nice -n 10 .venv/bin/python -m benchmarks.bake [--instructions "Answer in French." ...] [--sweep]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.ablate import sign_test
from benchmarks.common import ABLATIONS_DIR, machine_info, row, write_ablation, write_result
from benchmarks.generate import copied
from loracle.bake.baker import BakeReport, bake
from loracle.bake.config import BakeConfig, bake_config
from loracle.bake.measure import kl_per_token, teacher_targets
from loracle.bake.prompts import held_out_prompts
from loracle.bundled import general_prompts
from loracle.eval.batch import generate_batch
from loracle.eval.general import KNOWLEDGE_FILE, data_file, load_general
from loracle.eval.harness import forgetting_ratio, general_accuracy
from loracle.model import LoadedModel, apply_adapters, load_model, question_messages
from loracle.sources.sentences import split_sentences

EVAL_TOKENS = 48
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_STOPWORDS = {
    lang: frozenset(words.split())
    for lang, words in {
        "en": "the a an and of to in is are was it that this for with on as be you your i by or not",
        "fr": "le la les un une des et est de du en que qui dans pour pas sur au aux ce il elle vous je",
        "es": "el la los las un una y es de del en que por para con no se su al lo como está",
    }.items()
}


def language(text: str) -> str:
    """ "en", "fr" or "es": whose stopwords the text holds most of ("" when it holds none)."""
    words = [w.lower() for w in _WORD.findall(text)]
    counts = {lang: sum(w in stop for w in words) for lang, stop in _STOPWORDS.items()}
    best = max(counts, key=lambda lang: counts[lang])
    return best if counts[best] else ""


def one_sentence(text: str) -> bool:
    """One finished sentence: a single sentence that ends with ".", "!" or "?"."""
    found = split_sentences(text.strip())
    return len(found) == 1 and found[0].rstrip("\"')]").endswith((".", "!", "?"))


#: instruction -> (what its rule checks, the rule)
RULES: dict[str, tuple[str, Callable[[str], bool]]] = {
    "Answer in French.": ("share in French", lambda text: language(text) == "fr"),
    "Answer in Spanish.": ("share in Spanish", lambda text: language(text) == "es"),
    "Answer in one sentence.": ("share one finished sentence", one_sentence),
}


def replies(lm: LoadedModel, prompts: Sequence[str], system: str | None = None, tokens: int = EVAL_TOKENS) -> list[str]:
    return generate_batch(lm, [question_messages(p, system=system) for p in prompts], tokens)


def with_adapter(lm: LoadedModel, folder: Path) -> LoadedModel:
    """A copy of the base model with the adapter merged in, loaded as any PEFT user loads it."""
    return apply_adapters(copied(lm), [folder], merge=True)


def timed_bake(lm: LoadedModel, config: BakeConfig, folder: Path) -> tuple[float, float, BakeReport]:
    """Wall and CPU seconds of one bake, and its report."""
    wall, cpu = time.perf_counter(), time.process_time()
    report = bake(lm, config, folder)
    return time.perf_counter() - wall, time.process_time() - cpu, report


def measure(lm: LoadedModel, instruction: str, options: dict[str, Any], bare: list[str], work: Path) -> dict[str, Any]:
    """Every figure for one instruction (see the module docstring)."""
    prompts = held_out_prompts()
    what, rule = RULES[instruction]
    config = bake_config(instruction, options)
    wall, cpu, report = timed_bake(lm, config, work / "adapter")
    overlap = sorted(set(report.prompts) & set(prompts))
    targets = teacher_targets(lm, instruction, prompts, EVAL_TOKENS)
    prompted = [lm.tokenizer.decode(t.reply, skip_special_tokens=True).strip() for t in targets]
    baked_lm = with_adapter(lm, work / "adapter")
    baked = replies(baked_lm, prompts)
    knowledge = load_general(data_file(KNOWLEDGE_FILE), "knowledge")
    questions = [item.question for item in knowledge]
    acc_prompted, right_prompted = general_accuracy(knowledge, replies(lm, questions, instruction, 32))
    acc_baked, right_baked = general_accuracy(knowledge, replies(baked_lm, questions, None, 32))
    paired = sign_test(right_prompted, right_baked)  # "gained" by the prompted base: answers the baked model lost
    share = {
        name: sum(map(rule, texts)) / len(texts)
        for name, texts in (("base", bare), ("prompted", prompted), ("baked", baked))
    }
    return {
        "instruction": instruction,
        "check": what,
        "config": config.model_dump(mode="json"),
        "bake_wall_s": wall,
        "bake_cpu_s": cpu,
        "bake_phases_s": report.timings,
        "training_prompts": len(report.prompts),
        "loss_first_last": [report.losses[0], report.losses[-1]],
        "held_out_overlap": overlap,
        "kl_base": kl_per_token(lm, targets),
        "kl_baked": kl_per_token(baked_lm, targets),
        "share": share,
        "knowledge_prompted": acc_prompted,
        "knowledge_baked": acc_baked,
        "forgetting": forgetting_ratio(acc_prompted, acc_baked),
        "knowledge_questions": len(knowledge),
        "knowledge_lost_gained_p": [paired["gained"], paired["lost"], paired["p"]],
        "examples": [
            {"prompt": p, "prompted": t, "baked": b} for p, t, b in list(zip(prompts, prompted, baked, strict=True))[:6]
        ],
    }


def forgetting_note(result: dict[str, Any]) -> str:
    """The paired counts behind a forgetting figure: answers the prompted base got right that the baked model
    lost, those it gained, and how likely so many losses are if neither side were better (one-sided sign test)."""
    lost, gained, p = result["knowledge_lost_gained_p"]
    asked = result["knowledge_questions"]
    right = round(result["knowledge_prompted"] * asked)
    return f"{lost} of {right} prompted-right answers lost, {gained} gained (of {asked} asked); p = {p:.2f}"


def suite(lm: LoadedModel, instructions: list[str], options: dict[str, Any]) -> None:
    bare = replies(lm, held_out_prompts())
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, instruction in enumerate(instructions):
            work = Path(tmp) / str(n)
            results.append(measure(lm, instruction, options, bare, work))
            print(results[-1], flush=True)
    rows = []
    for r in results:
        tag = r["instruction"]
        rows += [
            row(
                f"{tag} KL/token, base without prompt", r["kl_base"], "nats", note="teacher: base with the instruction"
            ),
            row(f"{tag} KL/token, baked", r["kl_baked"], "nats", "< base", r["kl_baked"] < r["kl_base"]),
            row(
                f"{tag} {r['check']}: base / prompted / baked",
                " / ".join(f"{r['share'][k]:.2f}" for k in ("base", "prompted", "baked")),
                "",
                "baked near prompted",
            ),
            row(
                f"{tag} general knowledge, prompted / baked",
                f"{r['knowledge_prompted']:.2f} / {r['knowledge_baked']:.2f}",
                "accuracy",
            ),
            row(
                f"{tag} forgetting",
                r["forgetting"],
                "",
                "<= 0.05",
                r["forgetting"] is not None and r["forgetting"] <= 0.05,
                forgetting_note(r),
            ),
            row(
                f"{tag} bake time",
                r["bake_wall_s"],
                "s",
                "<= 120",
                r["bake_wall_s"] <= 120,
                f"CPU {r['bake_cpu_s']:.0f} s",
            ),
        ]
    table = {
        "columns": ["instruction", "KL base", "KL baked", "check", "base", "prompted", "baked", "forgetting", "bake s"],
        "rows": [
            [
                r["instruction"],
                f"{r['kl_base']:.3f}",
                f"{r['kl_baked']:.3f}",
                r["check"],
                *(f"{r['share'][k]:.2f}" for k in ("base", "prompted", "baked")),
                f"{r['forgetting']:.2f}" if r["forgetting"] is not None else "",
                f"{r['bake_wall_s']:.0f}",
            ]
            for r in results
        ],
    }
    write_result(
        "bake",
        rows,
        {"results": results, "summary_table": table, "held_out": len(held_out_prompts()), "eval_tokens": EVAL_TOKENS},
    )


#: the variants `--sweep` can compare (adapted modules, rank, learning rate, steps); --variants picks some
VARIANTS: dict[str, dict[str, Any]] = {
    "attention q,v": {"modules": ["q_proj", "v_proj"], "lr": 2e-3, "layer_fraction": 0.25},
    "MLP down": {"modules": ["down_proj"], "lr": 2e-3, "layer_fraction": 0.25},
    "attention + MLP, rank 4": {
        "modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "rank": 4,
        "alpha": 8.0,
        "lr": 2e-3,
        "layer_fraction": 0.25,
    },
    "attention q,v, lr 6e-3": {"modules": ["q_proj", "v_proj"], "lr": 6e-3, "layer_fraction": 0.25},
    "attention q,v, upper half, lr 6e-3": {"modules": ["q_proj", "v_proj"], "lr": 6e-3, "layer_fraction": 0.5},
    "MLP down, lr 6e-3": {"modules": ["down_proj"], "lr": 6e-3, "layer_fraction": 0.25},
    "attention q,v + MLP down, lr 6e-3": {
        "modules": ["q_proj", "v_proj", "down_proj"],
        "lr": 6e-3,
        "layer_fraction": 0.25,
    },
}
SWEEP = "bake_sweep"


def sweep(lm: LoadedModel, instructions: list[str], variants: list[str], options: dict[str, Any]) -> None:
    """KL on 10 dev prompts (general prompts 60-69) after bakes that trained on the first 59, per variant; the
    results join those of earlier sweeps in the ablation (a variant measured again replaces its old result)."""
    dev = general_prompts()[59:69]
    path = ABLATIONS_DIR / f"{SWEEP}.json"
    results = json.loads(path.read_text(encoding="utf-8"))["data"]["results"] if path.exists() else []
    with tempfile.TemporaryDirectory() as tmp:
        for instruction in instructions:
            targets = teacher_targets(lm, instruction, dev, EVAL_TOKENS)
            base = kl_per_token(lm, targets)
            for name in variants:
                config = bake_config(instruction, {**options, "general_prompts": 59, **VARIANTS[name]})
                folder = Path(tmp) / "adapter"
                wall, cpu, report = timed_bake(lm, config, folder)
                assert not set(report.prompts) & set(dev)
                kl = kl_per_token(with_adapter(lm, folder), targets)
                found = {"instruction": instruction, "variant": name, "options": {**options, **VARIANTS[name]}}
                found |= {"kl_base": base, "kl_baked": kl, "wall_s": wall, "cpu_s": cpu, "phases_s": report.timings}
                found["loss_first_last"] = [report.losses[0], report.losses[-1]]
                results = [r for r in results if (r["instruction"], r["variant"]) != (instruction, name)] + [found]
                print(found, flush=True)
    rows = [
        row(
            f"{r['instruction']} {r['variant']}: KL/token",
            r["kl_baked"],
            "nats",
            note=f"base {r['kl_base']:.3f}; bake {r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU",
        )
        for r in results
    ]
    write_ablation(SWEEP, rows, {"results": results, "dev_prompts": dev})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instructions", nargs="+", default=list(RULES), choices=list(RULES))
    parser.add_argument("--sweep", action="store_true", help="compare variants on dev prompts instead")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS)[:3], choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=None, help="bake steps (default: the config's)")
    args = parser.parse_args()
    options = {"steps": args.steps} if args.steps else {}
    lm = load_model("embedded")
    if args.sweep:
        sweep(lm, args.instructions, args.variants, options)
    else:
        suite(lm, args.instructions, options)
    print(machine_info())


if __name__ == "__main__":
    main()
