"""Greedy continuations of several token prompts in one `generate` call, their common start prefilled once.

Prompts are left-padded against each other so every row ends where generation starts. The tokens all of
them begin with (a chat template's system turn, a few-shot block) are run through the model once and their
key/value cache copied to every row, instead of being prefilled once per row: on a CPU, prefill is most of
the cost of a batch of short generations. The padding then sits between that shared start and the rest of
each prompt; the attention mask hides it and positions count real tokens only, so each row continues
exactly as it would alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
from transformers import DynamicCache, PreTrainedTokenizerBase

from loracle.model.chat import stop_token_ids
from loracle.model.loader import LoadedModel


@lru_cache(maxsize=4)
def line_end_ids(tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """Every token whose text holds a line break (decoded once per tokenizer)."""
    return frozenset(i for i in range(len(tokenizer)) if "\n" in tokenizer.decode([i]))


def shared_start(prompts: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all prompts share, leaving each at least one of its own to run."""
    size = min(len(p) for p in prompts) - 1
    for i in range(max(size, 0)):
        if any(p[i] != prompts[0][i] for p in prompts):
            return i
    return max(size, 0)


def greedy_batch(
    lm: LoadedModel, prompts: Sequence[Sequence[int]], max_new_tokens: int, *, one_line: bool = False
) -> list[str]:
    """The greedy continuation of each prompt, as text up to the first stop token. With `one_line`, a row also
    stops after its first token holding a line break (few-shot completions go on to invent the next example);
    the text keeps that token, so it reads exactly as the start of the longer continuation."""
    if not prompts:
        return []
    shared = shared_start(prompts)
    prefix, prompts = prompts[0][:shared], [p[shared:] for p in prompts]
    tokenizer = lm.tokenizer
    stops = sorted(stop_token_ids(tokenizer))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[*prefix, *[pad] * (width - len(p)), *p] for p in prompts], device=lm.device)
    mask = torch.tensor([[1] * len(prefix) + [0] * (width - len(p)) + [1] * len(p) for p in prompts])
    extra = {}
    with torch.inference_mode():
        if prefix:
            cache = DynamicCache(config=lm.model.config)
            lm.model(input_ids=ids[:1, : len(prefix)], cache=cache, use_cache=True)
            cache.batch_repeat_interleave(len(prompts))
            extra["cache"] = cache
        out = lm.model.generate(
            input_ids=ids,
            attention_mask=mask.to(lm.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=sorted({*stops, *line_end_ids(tokenizer)}) if one_line else stops,
            **extra,
        )
    texts = []
    for row in out[:, ids.shape[1] :].tolist():
        cut = next((i for i, t in enumerate(row) if t in stops), len(row))
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
    return texts
