"""A lean decode step for Llama-family models: the same weights and arithmetic as transformers, less overhead.

transformers' forward builds masks, cache objects and position tensors at every step; for a 135M model
with 30 layers on a CPU that bookkeeping is a large share of each decoded token. This step walks the
model's own modules (so merged weights and unmerged PEFT LoRA layers both work unchanged), keeps keys
and values in one preallocated tensor per layer (a static KV cache) and takes rotary tables from the
model's own rotary embedding, computed once per generation.

Only plain Llama-style decoder stacks are handled (`supports_lean`); anything else uses transformers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from loracle.model import half

SUPPORTED_TYPES = ("llama", "mistral", "qwen2", "qwen3")


def _decoder_stack(model: nn.Module) -> nn.Module | None:
    """The inner `XModel` (embed_tokens, layers, norm, rotary_emb), looking through a PEFT wrapper."""
    inner = model
    if hasattr(inner, "get_base_model"):  # a PeftModel
        inner = inner.get_base_model()
    stack = getattr(inner, "model", None)
    wanted = ("embed_tokens", "layers", "norm", "rotary_emb")
    return stack if stack is not None and all(hasattr(stack, a) for a in wanted) else None


def supports_lean(model: nn.Module) -> bool:
    """True for decoder stacks whose layers are exactly Llama's: RMSNorm, GQA attention, gated MLP."""
    config = getattr(model, "config", None)
    stack = _decoder_stack(model)
    if config is None or stack is None or getattr(config, "model_type", None) not in SUPPORTED_TYPES:
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", False):
        return False
    layer = stack.layers[0]
    attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    return all(hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj")) and all(
        hasattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj")
    )


class LeanDecoder:
    """One generation's decoder state: a static KV cache sized for `capacity` positions.

    `step(ids)` runs the next len(ids) tokens (the whole prompt first, then one token at a time) and
    returns the logits of the last one.
    """

    def __init__(self, model: nn.Module, capacity: int, *, fp16_weights: bool = False) -> None:
        config = model.config
        self.stack = _decoder_stack(model)
        self.lm_head = model.get_output_embeddings()
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.scale = getattr(self.stack.layers[0].self_attn, "scaling", self.head_dim**-0.5)
        self.capacity = capacity
        self.position = 0
        weight = self.stack.embed_tokens.weight
        shape = (len(self.stack.layers), 1, self.kv_heads, capacity, self.head_dim)
        self.keys = torch.zeros(shape, dtype=weight.dtype, device=weight.device)
        self.values = torch.zeros(shape, dtype=weight.dtype, device=weight.device)
        positions = torch.arange(capacity, device=weight.device).unsqueeze(0)
        cos, sin = self.stack.rotary_emb(self.keys[0, :, :, :1, :].transpose(1, 2), positions)
        self.cos, self.sin = cos[0].to(weight.dtype), sin[0].to(weight.dtype)  # [capacity, head_dim]
        # qwen3 normalises queries and keys per head; the others have no such norms
        first = self.stack.layers[0].self_attn
        self.qk_norm = hasattr(first, "q_norm") and hasattr(first, "k_norm")
        self.packs = half.prepare(packable_linears(model)) if fp16_weights else {}
        self.loras = {m: delta for m in model.modules() if (delta := LowRankDelta.of(m)) is not None}
        # layers computed by their own forward: PEFT's LoRA variants (DoRA, ...), merged or disabled layers, and
        # layers with forward hooks (how the ttt and hypernet learners attach their adapters)
        self.own_forward = {
            m
            for m in model.modules()
            if (hasattr(m, "base_layer") and m not in self.loras) or m._forward_hooks or m._forward_pre_hooks
        }

    def linear(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """module(x): the base weight from its fp16 pack on decode steps where there is one, plus any LoRA delta."""
        if module in self.own_forward:
            return module(x)
        lora = self.loras.get(module)
        base = lora.base if lora is not None else module
        pack = self.packs.get(base) if x.shape[1] == 1 else None
        if pack is not None:
            out = half.linear_fp16(x, pack)
        elif type(base) is nn.Linear:
            out = F.linear(x, base.weight, base.bias)
        else:
            out = base(x)
        return lora.add_to(out, x) if lora is not None else out

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits [vocab] after feeding `ids` (1-D) at the next positions."""
        count = ids.shape[0]
        start, end = self.position, self.position + count
        if end > self.capacity:
            raise ValueError(f"KV cache holds {self.capacity} positions; asked for {end}")
        cos, sin = self.cos[start:end], self.sin[start:end]
        mask = self._mask(start, end)
        hidden = self.stack.embed_tokens(ids.unsqueeze(0))  # [1, count, hidden]
        for index, layer in enumerate(self.stack.layers):
            hidden = hidden + self._attention(index, layer, layer.input_layernorm(hidden), cos, sin, mask, start, end)
            mlp = layer.mlp
            x = layer.post_attention_layernorm(hidden)
            hidden = hidden + self.linear(
                mlp.down_proj, F.silu(self.linear(mlp.gate_proj, x)) * self.linear(mlp.up_proj, x)
            )
        self.position = end
        last = self.stack.norm(hidden[:, -1:, :])
        return self.linear(self.lm_head, last)[0, -1]

    def _mask(self, start: int, end: int) -> torch.Tensor | None:
        """None for one new token (it may see everything); else a causal mask over the cached prefix too."""
        if end - start == 1:
            return None
        rows = torch.arange(start, end, device=self.keys.device).unsqueeze(1)
        cols = torch.arange(end, device=self.keys.device).unsqueeze(0)
        return cols <= rows

    def _attention(
        self,
        index: int,
        layer: nn.Module,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        start: int,
        end: int,
    ) -> torch.Tensor:
        attn = layer.self_attn
        count = x.shape[1]
        q = self.linear(attn.q_proj, x).view(1, count, self.heads, self.head_dim)
        k = self.linear(attn.k_proj, x).view(1, count, self.kv_heads, self.head_dim)
        v = self.linear(attn.v_proj, x).view(1, count, self.kv_heads, self.head_dim)
        if self.qk_norm:
            q, k = attn.q_norm(q), attn.k_norm(k)
        q = _rotate(q.transpose(1, 2), cos, sin)
        k = _rotate(k.transpose(1, 2), cos, sin)
        self.keys[index, :, :, start:end] = k
        self.values[index, :, :, start:end] = v.transpose(1, 2)
        out = F.scaled_dot_product_attention(
            q,
            self.keys[index, :, :, :end],
            self.values[index, :, :, :end],
            attn_mask=mask,
            scale=self.scale,
            enable_gqa=self.kv_heads != self.heads,
        )
        return self.linear(attn.o_proj, out.transpose(1, 2).reshape(1, count, self.heads * self.head_dim))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding, rotate-half convention (as transformers' Llama)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class LowRankDelta:
    """The active adapters of one plain PEFT LoRA layer as one low-rank product, scaling folded in.

    x -> (x A^T) (B s)^T for every active adapter at once, with A stacked by rows and B s by columns: two matrix
    products per layer instead of PEFT's per-adapter module calls, which dominate the cost of a decode step.
    """

    def __init__(self, base: nn.Module, a_t: torch.Tensor, bs_t: torch.Tensor) -> None:
        self.base, self.a_t, self.bs_t = base, a_t, bs_t

    @classmethod
    def of(cls, module: nn.Module) -> LowRankDelta | None:
        base = _plain_lora_base(module)
        if base is None:
            return None
        names = [n for n in module.active_adapters if n in module.lora_A]
        if not names:
            return None
        a = torch.cat([module.lora_A[n].weight for n in names], dim=0)  # [sum r, in]
        bs = torch.cat([module.lora_B[n].weight * module.scaling[n] for n in names], dim=1)  # [out, sum r]
        return cls(base, a.t().contiguous(), bs.t().contiguous())

    def add_to(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        flat = out.reshape(-1, out.shape[-1])
        low = torch.mm(x.reshape(-1, x.shape[-1]).to(self.a_t.dtype), self.a_t)
        return torch.addmm(flat, low.to(flat.dtype), self.bs_t.to(flat.dtype)).view(out.shape)


def packable_linears(model: nn.Module) -> list[nn.Module]:
    """The projections and the output head: plain linears, or the base layers inside plain LoRA layers."""
    stack = _decoder_stack(model)
    found: list[nn.Module] = [model.get_output_embeddings()]
    for layer in stack.layers if stack is not None else []:
        found += [getattr(layer.self_attn, name) for name in ("q_proj", "k_proj", "v_proj", "o_proj")]
        found += [getattr(layer.mlp, name) for name in ("gate_proj", "up_proj", "down_proj")]
    return [_plain_lora_base(m) or m for m in found]


def _plain_lora_base(module: nn.Module) -> nn.Module | None:
    """The wrapped linear of an unmerged, plain (no DoRA or other variant) PEFT LoRA layer, else None."""
    base = getattr(module, "base_layer", None)
    if base is None or not hasattr(module, "lora_A") or getattr(module, "merged", False):
        return None
    if getattr(module, "disable_adapters", False) or getattr(module, "lora_variant", None):
        return None
    if any(not isinstance(b, nn.Linear) or b.bias is not None for b in module.lora_B.values()):
        return None  # lora_bias, or not a linear adapter
    if any(not isinstance(a, nn.Linear) for a in module.lora_A.values()):
        return None
    dropout = getattr(module, "lora_dropout", {})
    if any(not isinstance(d, nn.Identity) and d.training for d in dropout.values()):
        return None
    return base
