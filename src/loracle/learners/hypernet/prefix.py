"""Memory tokens: a document compressed into the key/value cache of a few positions, a PEFT prefix adapter.

`m` trainable memory embeddings follow the document; the frozen base model reads prompt + document (no grad,
exactly as the teacher reads it) and then the memory positions, optionally with a small LoRA that acts only on
them. Only the memory positions' per-layer keys and values are kept: [layers, 2, kv_heads, m, head_dim], the
document's adapter. A question is then answered with that cache as its prefix and no document, the way PEFT runs
a prefix-tuning adapter: the cache holds m positions, the question takes positions m, m+1, ... (the cache's
length), and the stored keys are already rotated. So the memory is placed at positions 0..m-1 and the document
before it at negative positions: RoPE depends only on relative positions, so every hidden state is what natural
positions give; only the rotation the stored keys carry is that of a prefix at 0..m-1, which is where a
question after it (in training and in PEFT) sees them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache

from loracle.adapters.peft_format import prefix_config_dict, write_adapter_folder
from loracle.learners.hypernet.network import TargetsJson, decoder_layers
from loracle.learners.hypernet.reading import chunk_ids
from loracle.learners.lora import Lora, hooked
from loracle.model.prefix import PEFT_PREFIX_KEY, join_prefixes, peft_prefix_weights, prefix_cache

DESIGN = "prefix"
#: the modules of each decoder layer the compression LoRA adapts (at the memory positions only)
COMPRESS_TARGETS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")


@dataclass
class PrefixConfig(TargetsJson):
    hidden_size: int
    num_layers: int
    kv_heads: int
    head_dim: int
    #: target module (relative to a decoder layer) -> (in_features, out_features) of the compression LoRA
    targets: dict[str, tuple[int, int]]
    memory_tokens: int = 16
    compress_rank: int = 4
    #: a document is read in chunks of this many tokens, one prefix each, joined (older networks: one of 256)
    chunk_tokens: int = 256
    layer_prefix: str = "model.layers"
    design: str = DESIGN
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_model(
        cls,
        model: nn.Module,
        memory_tokens: int = 16,
        compress_rank: int = 4,
        targets: Sequence[str] = COMPRESS_TARGETS,
        chunk_tokens: int = 256,
    ) -> PrefixConfig:
        """Read the sizes from the base model (layers, key/value heads and head size, each target's features)."""
        config = model.config
        layers, prefix = decoder_layers(model)
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        shapes = {}
        for target in targets if compress_rank else ():
            module = layers[0].get_submodule(target)
            shapes[target] = (int(module.in_features), int(module.out_features))
        return cls(
            hidden_size=int(config.hidden_size),
            num_layers=len(layers),
            kv_heads=int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads),
            head_dim=int(head_dim),
            targets=shapes,
            memory_tokens=memory_tokens,
            compress_rank=compress_rank,
            chunk_tokens=chunk_tokens,
            layer_prefix=prefix,
        )

    def adapter_bytes(self, bytes_per_value: int = 4) -> int:
        """Size of one document's adapter (its prefix cache) on disk."""
        return self.memory_tokens * self.num_layers * 2 * self.kv_heads * self.head_dim * bytes_per_value


class MemoryCompressor(nn.Module):
    """The memory embeddings and the compression LoRA (B starts at zero: an untrained one adds nothing)."""

    def __init__(self, config: PrefixConfig, init: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        c = config
        self.memory = nn.Parameter(init.clone() if init is not None else torch.randn(c.memory_tokens, c.hidden_size))
        self.lora_a = nn.ParameterDict(
            {
                _key(t): nn.Parameter(torch.randn(c.num_layers, c.compress_rank, i) / i**0.5)
                for t, (i, _) in c.targets.items()
            }
        )
        self.lora_b = nn.ParameterDict(
            {_key(t): nn.Parameter(torch.zeros(c.num_layers, o, c.compress_rank)) for t, (_, o) in c.targets.items()}
        )

    @classmethod
    def for_model(cls, model: nn.Module, config: PrefixConfig) -> MemoryCompressor:
        """Memory embeddings that start as the embeddings of `m` random vocabulary tokens (from torch's RNG)."""
        embeddings = model.get_input_embeddings().weight.detach()
        picks = torch.randint(0, embeddings.shape[0], (config.memory_tokens,))
        return cls(config, embeddings[picks].float())

    def compress_lora(self) -> Lora:
        c = self.config
        return {
            f"{c.layer_prefix}.{layer}.{target}": (self.lora_a[_key(target)][layer], self.lora_b[_key(target)][layer])
            for target in c.targets
            for layer in range(c.num_layers)
        }

    def forward(self, model: nn.Module, context: Sequence[int]) -> torch.Tensor:
        """The memory's keys and values after `context` (prompt + document ids): [layers, 2, kv_heads, m, head_dim].

        The context is read without grad (nothing trainable acts on it); gradients reach the memory embeddings
        and the compression LoRA through the memory positions alone."""
        m = self.config.memory_tokens
        decoder = getattr(model, model.base_model_prefix)
        device = self.memory.device
        cache = DynamicCache(config=model.config)
        n = len(context)
        if n:
            with torch.no_grad():
                decoder(
                    input_ids=torch.tensor([list(context)], device=device),
                    position_ids=torch.arange(-n, 0, device=device)[None],
                    attention_mask=torch.ones(1, n, dtype=torch.long, device=device),
                    cache=cache,
                    use_cache=True,
                )
        lora = self.compress_lora()
        dtype = model.get_input_embeddings().weight.dtype
        with hooked(model, lora) if lora else contextlib.nullcontext():
            decoder(
                inputs_embeds=self.memory[None].to(dtype),
                position_ids=torch.arange(m, device=device)[None],
                attention_mask=torch.ones(1, n + m, dtype=torch.long, device=device),
                cache=cache,
                use_cache=True,
            )
        return torch.stack([torch.stack([layer.keys[0, :, -m:], layer.values[0, :, -m:]]) for layer in cache.layers])


def document_prefix(
    model: nn.Module, net: MemoryCompressor, prompt_ids: Sequence[int], ids: Sequence[int]
) -> torch.Tensor:
    """A document's prefix: each chunk of `net.config.chunk_tokens` read after `prompt_ids` into its own memory,
    the chunks' prefixes joined one after another (loracle.model.prefix)."""
    chunks = chunk_ids(ids, net.config.chunk_tokens)
    joined = join_prefixes(model, [net(model, [*prompt_ids, *chunk]) for chunk in chunks])
    if joined is None:
        raise ValueError("an empty document has no prefix")
    return joined


def _key(target: str) -> str:
    """ParameterDict keys may not contain dots."""
    return target.replace(".", "__")


def prefixed_states(model: nn.Module, kv: torch.Tensor, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """The decoder's last hidden states over right-padded `ids` with the prefix `kv` before every row: the
    question at positions m, m+1, ..., the prefix visible to every token, as PEFT runs a prefix adapter."""
    decoder = getattr(model, model.base_model_prefix)
    prefix = torch.ones(ids.shape[0], kv.shape[3], dtype=attention.dtype, device=attention.device)
    mask = torch.cat([prefix, attention], dim=1)
    out = decoder(input_ids=ids, attention_mask=mask, cache=prefix_cache(kv, ids.shape[0]), use_cache=True)
    return out.last_hidden_state


def write_prefix_adapter(
    folder: Path, kv: torch.Tensor, *, base_model: str, manifest: dict[str, Any], dtype: torch.dtype = torch.float32
) -> int:
    """Write the cache as a plain PEFT prefix-tuning folder (`PeftModel.from_pretrained` answers with it exactly
    as `prefixed_states` does); returns the bytes of its weights file."""
    layers, _, kv_heads, m, head_dim = kv.shape
    config = prefix_config_dict(m, layers, kv_heads, head_dim, base_model)
    return write_adapter_folder(folder, {PEFT_PREFIX_KEY: peft_prefix_weights(kv)}, config, manifest, dtype)
