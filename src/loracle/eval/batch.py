"""Greedy answers for many prompts at once: the references (floor, ceiling, general set) are plain base-model
calls, and on a CPU a batch of short prompts costs little more than one."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from loracle.model import LoadedModel, Message, encode_chat
from loracle.model.chat import stop_token_ids


def generate_batch(
    lm: LoadedModel, conversations: Sequence[Sequence[Message]], max_new_tokens: int, batch_size: int = 8
) -> list[str]:
    """The greedy reply to each conversation, in order (prompts of similar length are batched together)."""
    tokenizer = lm.tokenizer
    prompts = [encode_chat(tokenizer, messages) for messages in conversations]
    stops = stop_token_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(stops))
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    replies: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        group = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in group)
        ids = torch.full((len(group), width), pad, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, i in enumerate(group):  # left padding: every prompt ends where generation starts
            ids[row, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]) :] = 1
        with torch.inference_mode():
            out = lm.model.generate(
                input_ids=ids.to(lm.device),
                attention_mask=mask.to(lm.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=sorted(stops),
                pad_token_id=pad,
            )
        for row, i in enumerate(group):
            new = out[row, width:].tolist()
            cut = next((n for n, t in enumerate(new) if t in stops), len(new))
            replies[i] = tokenizer.decode(new[:cut], skip_special_tokens=True).strip()
    return replies
