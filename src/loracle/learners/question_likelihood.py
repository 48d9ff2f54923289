"""How readily the model writes a question after reading a passage: a relevance signal that needs no other
model than the one that answers (query likelihood, as in unsupervised passage reranking).

A passage that answers a question makes the model expect that question much more than an unrelated passage
does, and more than no passage at all. Search ranks chunks by words and by a small sentence embedder; this
asks the language model itself, which reads the whole chunk, pronouns and all.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from loracle.model import LoadedModel

INSTRUCTION = "Write a question that this passage answers.\nQuestion:"


def question_logprobs(lm: LoadedModel, question: str, passages: Sequence[str | None]) -> list[float]:
    """The mean log-probability per token of `question` written after each of `passages` and `INSTRUCTION`
    (None: after the instruction alone), in one batch.

    Rows are padded on the left, so the question's tokens end every row and only their logits are computed.
    """
    asked = lm.tokenizer.encode(" " + question.strip(), add_special_tokens=False)
    if not asked or not passages:
        return [0.0] * len(passages)
    rows = [
        lm.tokenizer.encode(f"{p.strip()}\n\n{INSTRUCTION}" if p else INSTRUCTION, add_special_tokens=False) + asked
        for p in passages
    ]
    width = max(len(r) for r in rows)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=lm.device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=lm.device)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    with torch.inference_mode():
        logits = lm.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=len(asked) + 1
        ).logits
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # position i predicts the question's token i
    target = torch.tensor(asked, device=lm.device).expand(len(rows), -1)
    return logp.gather(-1, target[..., None]).squeeze(-1).mean(dim=1).tolist()
