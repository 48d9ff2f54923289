"""Train one document's adapter on its self-study pairs and the general examples.

`steps_per_doc` AdamW steps on batches drawn epoch by epoch (`balanced_batches`), so every pair is trained on
equally often. Only the upper layers run at each step, over cached inputs (upper.py): the states entering the
first adapted layer or, where that layer adds its MLP output straight into the residual stream, the states
leaving it plus what its down projection reads, so a step runs one layer fewer and adds the first adapter's
output itself. The general examples' cached inputs are the same for every document (the lower layers are the
base model's), so a `StateMemo` kept by the learner holds them across documents. The loss is normalised over
the tokens that compete with the targets (vocab.py) and, for question-answer pairs with a teacher, adds a
distillation term toward the in-context distribution.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

import torch

from loracle.learners.ttt.config import TTTConfig
from loracle.learners.ttt.general import GENERAL_DOC
from loracle.learners.ttt.selfstudy import StudyExample
from loracle.learners.ttt.upper import adds_mlp_to_residual, folded_states, lower_states, upper_hidden
from loracle.learners.ttt.vocab import CandidateHead, candidate_head, output_head
from loracle.model import LoadedModel
from loracle.model.precision import Precision, autocast_bf16


@dataclass
class GeneralMemo:
    """What training computes for the general examples that is the same for every document, kept by the
    learner across documents: their cached states (the lower layers are the base model's) and the base
    model's top-k over their replies."""

    #: (layer, folded, row of ids) -> the row's input states of that layer (of the next one when folded past
    #: it: layer_inputs), and what the first adapter reads there
    states: dict[tuple[int, bool, tuple[int, ...]], tuple[torch.Tensor, torch.Tensor | None]] = field(
        default_factory=dict
    )
    #: (layer, k, row of ids) -> the base model's top-k tokens over the row's answer
    candidates: dict[tuple[int, int, tuple[int, ...]], list[int]] = field(default_factory=dict)


class Trainable(Protocol):
    """What `train` needs of an adapter (gating.GatedLoRA, dual.DualMLP)."""

    layers: list[int]
    lr_scale: float  # its steps take this share of `lr`
    #: what the first adapted layer adds to its output for what its down projection reads, when that is all it
    #: changes there (so the layer can be folded into the cached states: `layer_inputs`); else None
    first_delta: Callable[[torch.Tensor], torch.Tensor] | None

    def prepare(self, lm: LoadedModel, config: TTTConfig) -> None: ...
    def parameters(self) -> Iterator[torch.nn.Parameter]: ...
    def hooked(self, lm: LoadedModel) -> AbstractContextManager[None]: ...
    def one_step(self) -> AbstractContextManager[None]: ...


def train(
    lm: LoadedModel,
    adapter: Trainable,
    examples: Sequence[StudyExample],
    config: TTTConfig,
    memo: GeneralMemo | None = None,
) -> list[float]:
    """`config.steps_per_doc` steps of `adapter` on `examples` (what it reads prepared first: its gate, its
    whitener); returns each step's loss. The adapter is left as trained: its `finished()` is what the learner
    keeps. `memo` (kept by the caller across documents) holds what the general examples' training computes
    alike."""
    if not examples or config.steps_per_doc <= 0:
        return []
    memo = GeneralMemo() if memo is None else memo
    adapter.prepare(lm, config)
    size = min(config.batch_size, len(examples))
    batches = balanced_batches(len(examples), size, config.steps_per_doc, config.seed)
    used = sorted({i for batch in batches for i in batch})  # states only for examples some batch draws
    with frozen_base(lm):
        picked = [examples[i] for i in used]
        first_delta = adapter.first_delta
        start, computed, inner = layer_inputs(lm, picked, adapter.layers[0], memo, first_delta is not None)
        states = dict(zip(used, computed, strict=True))
        read = {i: x for i, x in zip(used, inner, strict=True) if x is not None}  # what the first adapter reads
        head = None
        if config.candidate_top_k > 0:
            head = candidate_head(lm, picked, computed, start, config.candidate_top_k, memo.candidates)
        with adapter.hooked(lm):
            return descend(
                lm,
                list(adapter.parameters()),
                examples,
                batches,
                lambda i: states[i] + first_delta(read[i]) if first_delta and read else states[i],
                start,
                head,
                lr=config.lr * adapter.lr_scale,
                distill_weight=config.distill_weight,
                step=adapter.one_step,
                precision=config.precision,
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
    step: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    precision: Precision = "float32",
) -> list[float]:
    """One AdamW step on `params` per batch of `examples` (gradients clipped to norm 1), the loss run from layer
    `first` over `inputs(i)`, example i's input there; the adapter must be hooked in. The forward and backward
    pass of each step run inside `step()` (ttt holds its effective A's there); the forward pass's matrix
    products in `precision` (model/precision.py). Returns each step's loss."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    losses = []
    for picked in batches:
        batch = [examples[i] for i in picked]
        with step():
            with autocast_bf16(lm.device, precision):
                value = loss(lm, batch, first, [inputs(i) for i in picked], head, distill_weight, answer_weight)
            optimizer.zero_grad()
            value.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(float(value.detach()))
    return losses


def layer_inputs(
    lm: LoadedModel, examples: Sequence[StudyExample], first: int, memo: GeneralMemo, may_fold: bool = True
) -> tuple[int, list[torch.Tensor], list[torch.Tensor | None]]:
    """The first layer training runs and, per example, the cached states entering it and what the adapter of
    layer `first` reads (None unless that layer is folded into the cache: `folded_states`, only if `may_fold`).
    States in `memo.states` are reused; general examples' new ones are added to it."""
    fold = may_fold and adds_mlp_to_residual(lm, first)
    known = memo.states
    rows = [tuple(e.prompt + e.answer) for e in examples]
    todo = list(dict.fromkeys(row for row in rows if (first, fold, row) not in known))
    if fold:
        computed, inner = folded_states(lm, [list(row) for row in todo], first)
    else:
        computed, inner = lower_states(lm, [list(row) for row in todo], first), [None] * len(todo)
    fresh = dict(zip(todo, zip(computed, inner, strict=True), strict=True))
    general = {row for row, e in zip(rows, examples, strict=True) if e.doc_id == GENERAL_DOC}
    known.update({(first, fold, row): fresh[row] for row in todo if row in general})
    found = [fresh[row] if row in fresh else known[(first, fold, row)] for row in rows]
    return (first + 1 if fold else first), [s for s, _ in found], [x for _, x in found]


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
    top-k, running only the layers from `first` over `states` (the cached inputs of that layer; computed when
    not given), normalised over `head`'s candidate tokens when given, else over the whole vocabulary. Whatever
    adapter is hooked into the model takes part."""
    if states is None:
        states = lower_states(lm, [e.prompt + e.answer for e in batch], first)
    total = torch.zeros((), device=lm.device)
    answers = {}
    for group in length_groups([len(s) for s in states]):  # padding a short row to a long one is wasted work
        hidden = upper_hidden(lm, [states[i] for i in group], first)
        for row, i in enumerate(group):
            start = len(batch[i].prompt) - 1
            answers[i] = hidden[row, start : start + len(batch[i].answer)]
    for i, example in enumerate(batch):
        answer = answers[i]
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


def length_groups(lengths: Sequence[int], ratio: float = 1.5) -> list[list[int]]:
    """The indices of `lengths`, shortest first, in groups whose longest is at most `ratio` times their shortest:
    rows run together are padded to the longest, so a reading prompt among short questions would make every
    row of its batch as long as itself."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups: list[list[int]] = []
    for i in order:
        if groups and lengths[i] <= ratio * lengths[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


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
