"""Train an adapter on the upper layers only, from cached lower-layer states.

An adapter on layers `first..` cannot change what layers `..first-1` compute, so the hidden state entering
layer `first` is the same at every training step. It is computed once per training row (`lower_states`),
and each step runs only the upper layers and the output head over it (`upper_hidden`). With the adapter on
the last quarter of the layers this skips three quarters of every forward pass. The first adapted layer
can go into the cache too (`folded_states`): its own adapter is all that changes its output, by exactly the
adapter's output where the layer adds its MLP output straight into the residual stream.

Rows that begin alike (every recall prompt opens with the same chat system turn and instruction) have the
same states there, so both run those leading positions once, as one row, and the rest of every row
attends to their keys and values (`_run_shared`); with gradients on, the shared keys and values collect
the gradient of every row. Upper-layer rows share a start when their states there are identical, which
`lower_states` makes them bit for bit.

Both run the model's own decoder stack (its rotary embeddings and attention) with its layer list cut to the
lower or upper layers for the duration of the call, so they must not run while another thread uses the
same model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from transformers import DynamicCache

from loracle.model import LoadedModel
from loracle.model.batch import shared_start


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


def _attention_mask(lengths: Sequence[int], shared: int, width: int, device: torch.device) -> torch.Tensor:
    """[rows, 1, width, shared + width] bool: each row's own position i sees the shared positions and its own
    real positions up to i (the stack takes a 4D mask as given, whatever its cache holds)."""
    own = torch.arange(width, device=device)
    causal = own[None, :] <= own[:, None]
    real = own[None, :] < (torch.tensor(lengths, device=device)[:, None] - shared)
    seen = causal[None] & real[:, None, :]
    lead = torch.ones(len(lengths), width, shared, dtype=torch.bool, device=device)
    return torch.cat([lead, seen], dim=-1)[:, None]


def _run_shared(
    lm: LoadedModel, lead: torch.Tensor, rest: torch.Tensor, lengths: Sequence[int], part: slice, final_norm: bool
) -> torch.Tensor:
    """The stack part over rows that all begin with `lead` [shared, hidden] and go on with `rest` [rows, width,
    hidden] (`lengths` count the shared positions too): `lead` runs once, as one row, and its keys and values
    are repeated for the others. Returns [rows, shared + width, hidden]."""
    stack = _stack(lm)
    shared, (rows, width, _) = len(lead), rest.shape
    cache = DynamicCache(config=lm.model.config)
    positions = torch.arange(shared + width, device=rest.device)[None]
    with _only_layers(stack, part, final_norm):
        head = stack(
            inputs_embeds=lead[None],
            attention_mask=_attention_mask([shared], 0, shared, rest.device),
            position_ids=positions[:, :shared],
            cache=cache,
            use_cache=True,
        ).last_hidden_state
        cache.batch_repeat_interleave(rows)
        tail = stack(
            inputs_embeds=rest,
            attention_mask=_attention_mask(lengths, shared, width, rest.device),
            position_ids=positions[:, shared:],
            cache=cache,
            use_cache=True,
        ).last_hidden_state
    return torch.cat([head.expand(rows, -1, -1), tail], dim=1)


def _padded(states: Sequence[torch.Tensor], width: int) -> torch.Tensor:
    return torch.stack([nn.functional.pad(s, (0, 0, 0, width - len(s))) for s in states])


def _lower(
    lm: LoadedModel, rows: Sequence[list[int]], first: int, batch: int, capture: nn.Module | None
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The states entering layer `first` of each row and, when `capture` is given, what it read in each row."""
    stack = _stack(lm)
    states: list[torch.Tensor] = []
    read: list[torch.Tensor] = []
    calls: list[torch.Tensor] = []
    handle = capture.register_forward_pre_hook(lambda _m, inputs: calls.append(inputs[0])) if capture else None
    try:
        with torch.no_grad():
            for start in range(0, len(rows), batch):
                part = rows[start : start + batch]
                shared = shared_start(part) if len(part) > 1 else 0
                ids, mask = right_padded(lm, part)
                embeds = stack.embed_tokens(ids)
                calls.clear()
                if shared:
                    lengths = [len(r) for r in part]
                    out = _run_shared(lm, embeds[0, :shared], embeds[:, shared:], lengths, slice(0, first), False)
                else:
                    out = _run(lm, embeds, mask, slice(0, first), final_norm=False)
                states += [out[i, : len(r)].detach() for i, r in enumerate(part)]
                if capture:  # one call per batch, or the shared start's and then the rest's
                    seen = torch.cat([calls[0].expand(len(part), -1, -1), calls[1]], 1) if shared else calls[0]
                    read += [seen[i, : len(r)].detach() for i, r in enumerate(part)]
    finally:
        if handle:
            handle.remove()
    return states, read


def lower_states(lm: LoadedModel, rows: Sequence[list[int]], first: int, batch: int = 8) -> list[torch.Tensor]:
    """For each row of ids, the hidden state [len(row), hidden] entering layer `first` (no adapter there can
    change it), computed in right-padded batches, each batch's common start once."""
    return _lower(lm, rows, first, batch, None)[0]


def folded_states(
    lm: LoadedModel, rows: Sequence[list[int]], layer: int, batch: int = 8
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """For each row of ids, the base model's output of layer `layer` [len(row), hidden], and for each row what
    that layer's down projection read [len(row), intermediate]. With an adapter on that down projection (and
    none below), the layer's output is the first plus the adapter's output for the second, where the layer adds
    its MLP output straight into the residual stream (`adds_mlp_to_residual`), so training need not run it."""
    return _lower(lm, rows, layer + 1, batch, _stack(lm).layers[layer].mlp.down_proj)


def final_hidden(lm: LoadedModel, rows: Sequence[list[int]]) -> torch.Tensor:
    """Final normed hidden states [rows, width, hidden] of one batch of id rows (right-padded), their common
    start run once: rows that read the same passage and differ only after it pay for the passage once."""
    embeds = _stack(lm).embed_tokens(right_padded(lm, rows)[0])
    shared = shared_start(rows) if len(rows) > 1 else 0
    if shared:
        return _run_shared(lm, embeds[0, :shared], embeds[:, shared:], [len(r) for r in rows], slice(0, None), True)
    return _run(lm, embeds, _mask([len(r) for r in rows], embeds.shape[1], lm.device), slice(0, None), True)


def adds_mlp_to_residual(lm: LoadedModel, layer: int) -> bool:
    """Whether decoder layer `layer`'s output moves by exactly what is added to its MLP down projection's output
    (Llama, Qwen, Mistral and SmolLM layers; not those with a norm after the MLP): two forward passes of the
    layer alone over a few random states, the second with a bump added to that output."""
    stack = _stack(lm)
    down = stack.layers[layer].mlp.down_proj
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(1, 4, down.out_features, generator=generator).to(down.weight)
    bump = torch.randn(1, 4, down.out_features, generator=generator).to(down.weight)
    mask = _mask([4], 4, hidden.device)
    with torch.no_grad():
        plain = _run(lm, hidden, mask, slice(layer, layer + 1), final_norm=False)
        handle = down.register_forward_hook(lambda _m, _inputs, output: output + bump)
        try:
            bumped = _run(lm, hidden, mask, slice(layer, layer + 1), final_norm=False)
        finally:
            handle.remove()
    return torch.allclose(bumped - plain, bump, rtol=1e-3, atol=1e-4 * float(bump.abs().max()))


def shared_states(states: Sequence[torch.Tensor]) -> int:
    """How many leading positions all `states` hold identically, leaving each at least one of its own."""
    size = min(len(s) for s in states) - 1
    if len(states) < 2 or size <= 0:
        return 0
    lead = torch.stack([s[:size] for s in states])
    differs = (~(lead == lead[:1]).all(dim=-1).all(dim=0)).nonzero()
    return int(differs[0]) if len(differs) else size


def upper_hidden(lm: LoadedModel, states: Sequence[torch.Tensor], first: int) -> torch.Tensor:
    """Final normed hidden states [batch, width, hidden] of rows whose layer-`first` inputs are `states`."""
    width = max(len(s) for s in states)
    shared = shared_states(states)
    if shared:
        rest = _padded([s[shared:] for s in states], width - shared)
        return _run_shared(lm, states[0][:shared], rest, [len(s) for s in states], slice(first, None), True)
    mask = _mask([len(s) for s in states], width, states[0].device)
    return _run(lm, _padded(states, width), mask, slice(first, None), final_norm=True)
