"""Bake an instruction into a LoRA adapter: the prompted model's replies distilled into the unprompted one.

Every training prompt is answered once by the teacher (the instruction as the system message): its greedy
reply and its top-k distribution at each reply token (ttt's `replied_examples`). The student is the same
model with no system message and a fresh LoRA on the configured linear layers; it trains with ttt's loss
(cross-entropy to the teacher's top-k, the KL up to the teacher's entropy, and optionally on its reply),
its states below the first adapted layer computed once. The folder written is plain PEFT, with a manifest
that names the instruction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from loracle.atomic import holds_other_data
from loracle.bake.config import BakeConfig
from loracle.bake.prompts import training_prompts
from loracle.errors import LoracleError
from loracle.learners.lora import Lora, fresh_factors, hooked, linear_paths, write_peft
from loracle.learners.ttt.selfstudy import StudyExample, replied_examples
from loracle.learners.ttt.training import balanced_batches, descend, frozen_base
from loracle.learners.ttt.upper import lower_states
from loracle.learners.ttt.vocab import candidate_head
from loracle.model import LoadedModel, encode_chat, question_messages
from loracle.model.adapter_files import ADAPTER_CONFIG
from loracle.model.precision import autocast_bf16

#: what a baked adapter's manifest says made it
LEARNER = "bake"


@dataclass
class BakeReport:
    """What a bake wrote and what it cost."""

    folder: Path
    instruction: str
    prompts: list[str]
    seconds: float
    size_bytes: int
    losses: list[float]
    timings: dict[str, float] = field(default_factory=dict)


def check_out(out: Path) -> None:
    """Refuse an `--out` that holds something other than an adapter: writing replaces the folder whole."""
    if holds_other_data(out, ADAPTER_CONFIG):
        raise LoracleError(f"{out}: exists and is not an adapter folder (baking would replace it); choose a new folder")


def adapted_paths(lm: LoadedModel, config: BakeConfig) -> list[str]:
    """The module paths the adapter adapts: the configured linear layers of the upper `layer_fraction` of the
    decoder layers."""
    count = len(getattr(getattr(lm.model, "model", lm.model), "layers", []))
    first = count - max(1, round(config.layer_fraction * count))
    paths = linear_paths(lm.model, config.modules, range(first, count))
    if not paths:
        raise LoracleError(
            f"{lm.name}: no linear layers named {', '.join(config.modules)} in its decoder layers "
            "(bake option modules, e.g. q_proj,v_proj)"
        )
    return paths


def teacher_examples(lm: LoadedModel, config: BakeConfig, prompts: list[str]) -> list[StudyExample]:
    """Each prompt asked bare (the student's prompt), answered as the model answers it with the instruction as
    its system message (the teacher's reply and distribution); empty replies are dropped."""
    bare = [encode_chat(lm.tokenizer, question_messages(p)) for p in prompts]
    told = [encode_chat(lm.tokenizer, question_messages(p, system=config.instruction)) for p in prompts]
    made = replied_examples(lm, bare, told, config.reply_tokens, config.teacher_top_k, LEARNER)
    for example, prompt in zip(made, prompts, strict=True):
        example.cue = prompt
    return [e for e in made if e.answer]


def distil(
    lm: LoadedModel, factors: Lora, scale: float, examples: list[StudyExample], config: BakeConfig
) -> list[float]:
    """`config.steps` steps of the LoRA `factors` toward the teacher on `examples`; returns each step's loss."""
    first = min(int(path.split(".")[2]) for path in factors)  # model.layers.<i>...
    batches = balanced_batches(len(examples), min(config.batch_size, len(examples)), config.steps, config.seed)
    with frozen_base(lm):
        states = lower_states(lm, [e.prompt + e.answer for e in examples], first)
        head = candidate_head(lm, examples, states, first, config.candidate_top_k) if config.candidate_top_k else None
        with hooked(lm.model, factors, scale):
            params = [t for pair in factors.values() for t in pair]
            return descend(
                lm, params, examples, batches, states.__getitem__, first, head,
                lr=config.lr, distill_weight=config.distill_weight, answer_weight=config.answer_weight,
                precision=config.precision,
            )  # fmt: skip


def bake(lm: LoadedModel, config: BakeConfig, out: Path, progress: Callable[[str], None] | None = None) -> BakeReport:
    """Train `config.instruction` into a LoRA and write it to `out` as a PEFT adapter folder (atomically; an
    adapter already there is replaced, anything else refused)."""
    say = progress or (lambda _message: None)
    start = time.perf_counter()
    check_out(out)
    paths = adapted_paths(lm, config)  # a bad module name fails before any decoding
    with autocast_bf16(lm.device, config.precision):  # as ttt's self-study: nearly the same text, faster
        say("writing training prompts")
        prompts = training_prompts(lm, config)
        after_prompts = time.perf_counter()
        say(f"answering {len(prompts)} prompts as the prompted model")
        examples = teacher_examples(lm, config, prompts)
    if not examples:
        raise LoracleError(f"bake: the model replied nothing to any of {len(prompts)} training prompts")
    after_teacher = time.perf_counter()
    say(f"training the adapter ({config.steps} steps on {len(examples)} replies)")
    factors = fresh_factors(lm.model, paths, config.rank, config.seed)
    scale = config.alpha / config.rank
    losses = distil(lm, factors, scale, examples, config)
    after_training = time.perf_counter()
    timings = {
        "prompts": after_prompts - start,
        "teacher": after_teacher - after_prompts,
        "training": after_training - after_teacher,
    }
    size = write_peft(
        out,
        factors,
        scale=scale,
        base_model=lm.name,
        manifest={
            "id": out.name,
            "title": f"bake: {config.instruction}",
            "learner": LEARNER,
            "instruction": config.instruction,
            "base_model": lm.name,
            "base_fingerprint": lm.fingerprint,
            "config": config.model_dump(mode="json"),
            "training_prompts": len(examples),
            "loss_first": losses[0],
            "loss_last": losses[-1],
            "timings": {k: round(v, 2) for k, v in timings.items()},
        },
    )
    return BakeReport(out, config.instruction, prompts, time.perf_counter() - start, size, losses, timings)
