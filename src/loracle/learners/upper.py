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


def _mask(lengths: Sequence[int], width: int, device: torch.device) -> torch.Tensor:
    return torch.tensor([[1] * n + [0] * (width - n) for n in lengths], device=device)


def right_padded(lm: LoadedModel, rows: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and attention mask of `rows`, padded on the right (a causal model's states for real tokens ignore
    padding after them, so each row's states are those it has alone)."""
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    width = max(len(r) for r in rows)
    ids = torch.tensor([list(r) + [pad] * (width - len(r)) for r in rows], device=lm.device)
    return ids, _mask([len(r) for r in rows], width, lm.device)


def _run(lm: LoadedModel, embeds: torch.Tensor, mask: torch.Tensor, part: slice, final_norm: bool) -> torch.Tensor:
    stack = _stack(lm)
    with _only_layers(stack, part, final_norm):
        return stack(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state


def lower_states(lm: LoadedModel, rows: Sequence[list[int]], first: int, batch: int = 8) -> list[torch.Tensor]:
    """For each row of ids, the hidden state [len(row), hidden] entering layer `first` (no adapter there can
    change it), computed in right-padded batches."""
    stack = _stack(lm)
    states: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(rows), batch):
            part = rows[start : start + batch]
            ids, mask = right_padded(lm, part)
            out = _run(lm, stack.embed_tokens(ids), mask, slice(0, first), final_norm=False)
            states += [out[i, : len(r)].detach() for i, r in enumerate(part)]
    return states


def upper_hidden(lm: LoadedModel, states: Sequence[torch.Tensor], first: int) -> torch.Tensor:
    """Final normed hidden states [batch, width, hidden] of rows whose layer-`first` inputs are `states`."""
    width = max(len(s) for s in states)
    embeds = torch.stack([nn.functional.pad(s, (0, 0, 0, width - len(s))) for s in states])
    mask = _mask([len(s) for s in states], width, embeds.device)
    return _run(lm, embeds, mask, slice(first, None), final_norm=True)
