"""A training loss over the tokens that compete, instead of the whole vocabulary.

Recitation training asks for the probability of each passage token. Normalising over all 49k tokens at
every position costs the output head's full matmul, a 49k-wide log-softmax and their backward passes: on
a 135M model with the adapter on its upper quarter that is about half of each step. Almost all of that
mass sits on a few tokens: the ones the base model already favours at that position, and the targets.
The loss here normalises over that shared candidate set only: the union of the base model's top-k at
every answer position (one pass per distinct answer, before training), every target token and every
distillation teacher token. Tokens outside the set have low base logits and no gradient pushes them up,
so the full-vocabulary distribution at answer time follows the trained one (with the base top-256 the
trained loss over the whole vocabulary matched full-vocabulary training in 60% of its time; docs/experiments/ttt.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from loracle.learners.ttt.general import GENERAL_DOC
from loracle.learners.ttt.selfstudy import StudyExample
from loracle.learners.ttt.upper import upper_hidden
from loracle.model import LoadedModel


@dataclass
class CandidateHead:
    """The output head cut to `tokens`; `slot[token]` is a token's column in it (-1 when absent)."""

    tokens: torch.Tensor  # [n] vocabulary ids
    weight: torch.Tensor  # [n, hidden] rows of the output head
    bias: torch.Tensor | None
    slot: torch.Tensor  # [vocabulary] column of each id, -1 outside the set

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.weight, self.bias)

    def columns(self, ids: torch.Tensor) -> torch.Tensor:
        return self.slot[ids.to(self.slot.device)]


def output_head(lm: LoadedModel) -> torch.nn.Linear:
    head = lm.model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        raise ValueError(f"{type(lm.model).__name__}: the output head is not a linear layer")
    return head


def candidate_head(
    lm: LoadedModel,
    examples: Sequence[StudyExample],
    states: Sequence[torch.Tensor],
    first: int,
    top_k: int,
    known: dict[tuple[int, int, tuple[int, ...]], list[int]] | None = None,
    batch: int = 8,
) -> CandidateHead:
    """The candidate set of `examples` (see the module docstring); `states` are their cached inputs of layer
    `first`. Run before the adapter is active: the top-k are the base model's. `known` holds the top-k of
    general examples' rows, read when there and added to when not."""
    head = output_head(lm)
    known = {} if known is None else known
    wanted: set[int] = set()
    representative: dict[tuple[int, ...], int] = {}
    for i, example in enumerate(examples):
        wanted.update(example.answer)
        if example.teacher_ids is not None:
            wanted.update(example.teacher_ids.flatten().tolist())
        key = (first, top_k, tuple(example.prompt + example.answer))
        if key in known:
            wanted.update(known[key])
        else:
            representative.setdefault(tuple(example.answer), i)
    rows = list(representative.values())
    with torch.no_grad():
        for start in range(0, len(rows), batch):
            part = rows[start : start + batch]
            hidden = upper_hidden(lm, [states[i] for i in part], first)
            for row, i in enumerate(part):
                begin = len(examples[i].prompt) - 1
                logits = head(hidden[row, begin : begin + len(examples[i].answer)])
                top = torch.topk(logits, top_k, dim=-1).indices.flatten().tolist()
                wanted.update(top)
                if examples[i].doc_id == GENERAL_DOC:
                    known[(first, top_k, tuple(examples[i].prompt + examples[i].answer))] = top
    tokens = torch.tensor(sorted(wanted), device=head.weight.device)
    slot = torch.full((head.weight.shape[0],), -1, dtype=torch.long, device=head.weight.device)
    slot[tokens] = torch.arange(len(tokens), device=head.weight.device)
    bias = head.bias.detach()[tokens] if head.bias is not None else None
    return CandidateHead(tokens, head.weight.detach()[tokens], bias, slot)
