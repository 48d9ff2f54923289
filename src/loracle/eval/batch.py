"""Greedy answers for many prompts at once: the references (floor, ceiling, general set) are plain base-model
calls, and on a CPU a batch of short prompts costs little more than one."""

from __future__ import annotations

from collections.abc import Sequence

from loracle.model import LoadedModel, Message, encode_chat
from loracle.model.batch import greedy_batch


def generate_batch(
    lm: LoadedModel, conversations: Sequence[Sequence[Message]], max_new_tokens: int, batch_size: int = 8
) -> list[str]:
    """The greedy reply to each conversation, in order (prompts of similar length are batched together)."""
    tokenizer = lm.tokenizer
    prompts = [encode_chat(tokenizer, messages) for messages in conversations]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    replies: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        group = order[start : start + batch_size]
        for i, text in zip(group, greedy_batch(lm, [prompts[i] for i in group], max_new_tokens), strict=True):
            replies[i] = text
    return replies
