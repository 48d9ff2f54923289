"""How closely a model without the instruction follows the model with it: KL(teacher || student) per token.

The teacher is the base model with the instruction as its system message, the student the same prompts asked
bare (through whatever adapter the student model carries). Both are scored on the teacher's own greedy
replies, over the whole vocabulary, so the figure is the one distillation minimises, measured exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from loracle.learners.ttt.selfstudy import answer_ids
from loracle.learners.ttt.upper import right_padded
from loracle.model import LoadedModel, encode_chat, question_messages
from loracle.model.batch import greedy_batch


@dataclass
class TeacherTarget:
    """One prompt asked bare, the teacher's reply to it, and the teacher's log-probabilities over that reply."""

    bare: list[int]
    reply: list[int]
    logp: torch.Tensor  # [len(reply), vocabulary]


def _reply_logp(lm: LoadedModel, rows: Sequence[tuple[list[int], list[int]]], batch: int = 8) -> list[torch.Tensor]:
    """Log-probabilities [len(reply), vocabulary] of the model at each reply token after its prompt."""
    found: list[torch.Tensor] = []
    with torch.inference_mode():
        for start in range(0, len(rows), batch):
            part = rows[start : start + batch]
            ids, mask = right_padded(lm, [prompt + reply for prompt, reply in part])
            logits = lm.model(input_ids=ids, attention_mask=mask).logits
            for row, (prompt, reply) in enumerate(part):
                span = logits[row, len(prompt) - 1 : len(prompt) - 1 + len(reply)].float()
                found.append(torch.log_softmax(span, dim=-1).cpu())
    return found


def teacher_targets(
    lm: LoadedModel, instruction: str, prompts: Sequence[str], reply_tokens: int
) -> list[TeacherTarget]:
    """The teacher's greedy reply to each prompt (at most `reply_tokens`) and its distribution over it; `lm` is
    the base model (no adapter)."""
    told = [encode_chat(lm.tokenizer, question_messages(p, system=instruction)) for p in prompts]
    bare = [encode_chat(lm.tokenizer, question_messages(p)) for p in prompts]
    replies = [answer_ids(lm, r)[:reply_tokens] for r in greedy_batch(lm, told, reply_tokens)]
    logps = _reply_logp(lm, list(zip(told, replies, strict=True)))
    return [TeacherTarget(b, r, logp) for b, r, logp in zip(bare, replies, logps, strict=True)]


def kl_per_token(student: LoadedModel, targets: Sequence[TeacherTarget]) -> float:
    """Mean over all reply tokens of KL(teacher || student), the student asked the bare prompts."""
    logps = _reply_logp(student, [(t.bare, t.reply) for t in targets])
    total, count = 0.0, 0
    for target, logp in zip(targets, logps, strict=True):
        teacher = target.logp
        total += float((teacher.exp() * (teacher - logp)).sum())
        count += len(target.reply)
    return total / count if count else 0.0
