"""Train one document's adapter on its self-study pairs and the general examples.

`steps_per_doc` AdamW steps on batches drawn epoch by epoch (`balanced_batches`), so every pair is trained on
equally often. Only the upper layers run at each step, over cached inputs (upper.py): the states entering the
first adapted layer or, where that layer adds its MLP output straight into the residual stream, the states
leaving it plus what its down projection reads, so a step runs one layer fewer and adds the first adapter's
output itself. The loss is normalised over the tokens that compete with the targets (vocab.py) and, for
question-answer pairs with a teacher, adds a distillation term toward the in-context distribution.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence

import torch

from loracle.learners.lora import hooked
from loracle.learners.ttt.config import TTTConfig
from loracle.learners.ttt.gating import GatedLoRA, broad_neuron_mask, whiteners
from loracle.learners.ttt.selfstudy import StudyExample
from loracle.learners.ttt.upper import adds_mlp_to_residual, folded_states, lower_states, upper_hidden
from loracle.learners.ttt.vocab import CandidateHead, candidate_head, output_head
from loracle.model import LoadedModel


def train(lm: LoadedModel, lora: GatedLoRA, examples: Sequence[StudyExample], config: TTTConfig) -> list[float]:
    """`config.steps_per_doc` steps of `lora` on `examples` (its gate and whitener found first); returns each
    step's loss. The whitener stays set: fold it (`GatedLoRA.fold_whitener`) once training is done."""
    if not examples or config.steps_per_doc <= 0:
        return []
    if not lora.gated and config.mask_fraction > 0:
        lora.set_broad(broad_neuron_mask(lm, lora.layers, config.mask_fraction))
    if lora.whitener is None and config.whiten_ridge is not None:
        lora.set_whitener(whiteners(lm, lora.layers, config.whiten_ridge))
    size = min(config.batch_size, len(examples))
    batches = balanced_batches(len(examples), size, config.steps_per_doc, config.seed)
    used = sorted({i for batch in batches for i in batch})  # states only for examples some batch draws
    rows = [examples[i].prompt + examples[i].answer for i in used]
    with frozen_base(lm):
        first = lora.layers[0]
        if adds_mlp_to_residual(lm, first):  # the cached states leave the first adapted layer
            computed, inner = folded_states(lm, rows, first)
            start = first + 1
        else:
            computed, inner, start = lower_states(lm, rows, first), [], first
        states = dict(zip(used, computed, strict=True))
        read = dict(zip(used, inner, strict=True)) if inner else {}  # what the first adapter reads
        head = None
        if config.candidate_top_k > 0:
            head = candidate_head(lm, [examples[i] for i in used], computed, start, config.candidate_top_k)
        with hooked(lm.model, lora.factors(), lora.scale):
            return descend(
                lm,
                [lora.A, lora.B],
                examples,
                batches,
                lambda i: states[i] + lora.delta(0, read[i]) if read else states[i],
                start,
                head,
                lr=config.lr,
                distill_weight=config.distill_weight,
            )


def descend(
    lm: LoadedModel,
    params: Sequence[torch.Tensor],
    examples: Sequence[StudyExample],
    batches: Sequence[Sequence[int]],
    inputs: Callable[[int], torch.Tensor],
    first: int,
    head: CandidateHead | None,
    *,
    lr: float,
    distill_weight: float,
    answer_weight: float = 1.0,
) -> list[float]:
    """One AdamW step on `params` per batch of `examples` (gradients clipped to norm 1), the loss run from layer
    `first` over `inputs(i)`, example i's input there; the adapter must be hooked in. Returns each step's loss."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    losses = []
    for picked in batches:
        batch = [examples[i] for i in picked]
        value = loss(lm, batch, first, [inputs(i) for i in picked], head, distill_weight, answer_weight)
        optimizer.zero_grad()
        value.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(float(value.detach()))
    return losses


def loss(
    lm: LoadedModel,
    batch: Sequence[StudyExample],
    first: int,
    states: Sequence[torch.Tensor] | None = None,
    head: CandidateHead | None = None,
    distill_weight: float = 1.0,
    answer_weight: float = 1.0,
) -> torch.Tensor:
    """`answer_weight` x cross-entropy on the answer tokens + `distill_weight` x cross-entropy to the teacher's
    top-k, running
    only the layers from `first` over `states` (the cached inputs of that layer; computed when not given),
    normalised over `head`'s candidate tokens when given, else over the whole vocabulary. Whatever adapter is
    hooked into the model takes part."""
    if states is None:
        states = lower_states(lm, [e.prompt + e.answer for e in batch], first)
    hidden = upper_hidden(lm, states, first)
    total = torch.zeros((), device=lm.device)
    for i, example in enumerate(batch):
        start = len(example.prompt) - 1
        answer = hidden[i, start : start + len(example.answer)]
        logits = (head.logits(answer) if head else output_head(lm)(answer)).float()
        logp = torch.log_softmax(logits, dim=-1)
        target = torch.tensor(example.answer, device=lm.device)
        total = total - answer_weight * logp.gather(1, (head.columns(target) if head else target)[:, None]).mean()
        if distill_weight and example.teacher_ids is not None and example.teacher_logp is not None:
            teacher = torch.softmax(example.teacher_logp.to(lm.device), dim=-1)
            ids = example.teacher_ids.to(lm.device)
            student = logp.gather(1, head.columns(ids) if head else ids)
            total = total - distill_weight * (teacher * student).sum(-1).mean()
    return total / len(batch)


@contextlib.contextmanager
def frozen_base(lm: LoadedModel) -> Iterator[None]:
    """Base weights take no gradients while an adapter trains (restored afterwards)."""
    params = list(lm.model.parameters())
    before = [p.requires_grad for p in params]
    was_training = lm.model.training
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, before, strict=True):
            p.requires_grad_(flag)
        lm.model.train(was_training)


def balanced_batches(count: int, size: int, steps: int, seed: int) -> list[list[int]]:
    """`steps` batches of `size` distinct indices below `count`, drawn epoch by epoch: every example is used
    once before any is used again, so each is trained on as often as the others."""
    rng = random.Random(seed)
    batches: list[list[int]] = []
    pending: list[int] = []
    while len(batches) < steps:
        if len(pending) < size:
            epoch = [i for i in range(count) if i not in pending]
            rng.shuffle(epoch)
            pending += epoch
        batches.append(pending[:size])
        pending = pending[size:]
    return batches
