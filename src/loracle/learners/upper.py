"""Train an adapter on the upper layers only, from cached lower-layer states.

An adapter on layers `first..` cannot change what layers `..first-1` compute, so the hidden state entering
layer `first` is the same at every training step. It is computed once per training row (`lower_states`),
and each step runs only the upper layers and the output head over it (`upper_hidden`). With the adapter on
the last quarter of the layers this skips three quarters of every forward pass.

Both run the model's own decoder stack (its masks and rotary embeddings) with its layer list cut to the
lower or upper layers for the duration of the call, so they must not run while another thread uses the
same model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from loracle.model import LoadedModel


def _stack(lm: LoadedModel) -> nn.Module:
    stack = getattr(lm.model, "model", None)
    if stack is None or not isinstance(getattr(stack, "layers", None), nn.ModuleList):
        raise ValueError(f"{type(lm.model).__name__}: no decoder layer list at model.layers")
    return stack


@contextlib.contextmanager
def _only_layers(stack: nn.Module, part: slice, final_norm: bool) -> Iterator[None]:
    """The decoder stack with only `part` of its layers (and, unless `final_norm`, no final norm)."""
    layers, norm = stack.layers, stack.norm
    stack.layers = nn.ModuleList(list(layers)[part])
    if not final_norm:
        stack.norm = nn.Identity()
    try:
        yield
    finally:
        stack.layers, stack.norm = layers, norm


def _run(lm: LoadedModel, embeds: torch.Tensor, lengths: Sequence[int], part: slice, final_norm: bool) -> torch.Tensor:
    stack = _stack(lm)
    mask = torch.tensor([[1] * n + [0] * (embeds.shape[1] - n) for n in lengths], device=embeds.device)
    with _only_layers(stack, part, final_norm):
        return stack(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state


def lower_states(lm: LoadedModel, rows: Sequence[list[int]], first: int, batch: int = 8) -> list[torch.Tensor]:
    """For each row of ids, the hidden state [len(row), hidden] entering layer `first` (no adapter there can
    change it). Rows run in right-padded batches: a causal model's states for real tokens ignore the padding."""
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    stack = _stack(lm)
    states: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(rows), batch):
            part = rows[start : start + batch]
            width = max(len(r) for r in part)
            ids = torch.tensor([r + [pad] * (width - len(r)) for r in part], device=lm.device)
            out = _run(lm, stack.embed_tokens(ids), [len(r) for r in part], slice(0, first), final_norm=False)
            states += [out[i, : len(r)].detach() for i, r in enumerate(part)]
    return states


def upper_hidden(lm: LoadedModel, states: Sequence[torch.Tensor], first: int) -> torch.Tensor:
    """Final normed hidden states [batch, width, hidden] of rows whose layer-`first` inputs are `states`."""
    width = max(len(s) for s in states)
    embeds = torch.stack([nn.functional.pad(s, (0, 0, 0, width - len(s))) for s in states])
    return _run(lm, embeds, [len(s) for s in states], slice(first, None), final_norm=True)
