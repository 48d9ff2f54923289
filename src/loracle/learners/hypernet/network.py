"""The hypernetwork: per-layer activations of the document -> a rank-r LoRA for each target module.

Perceiver-style: `rank` learned latents (one per LoRA rank component) plus a layer embedding attend to
each layer's activations over the document, refine themselves with self-attention and an MLP, and two
linear heads per target module turn latent i into row i of A and column i of B. The B heads start at zero,
so an untrained hypernetwork writes a zero delta. A learned bias LoRA (the same for every document) is
added to every generated adapter by rank concatenation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from loracle.learners.hypernet.reading import Reading
from loracle.learners.lora import Lora

DEFAULT_TARGETS = ("mlp.down_proj",)


class TargetsJson:
    """JSON of a dataclass config whose `targets` maps a module (relative to a decoder layer) to its (in, out)
    features: tuples become lists and back."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)  # type: ignore[call-overload]
        data["targets"] = {k: list(v) for k, v in data["targets"].items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Any:
        data = dict(data)
        data["targets"] = {k: (int(v[0]), int(v[1])) for k, v in data["targets"].items()}
        return cls(**data)


@dataclass
class NetworkConfig(TargetsJson):
    hidden_size: int
    num_layers: int
    #: target module (relative to a decoder layer) -> (in_features, out_features)
    targets: dict[str, tuple[int, int]]
    rank: int = 8
    bias_rank: int = 4
    width: int = 256
    heads: int = 4
    layer_prefix: str = "model.layers"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_model(cls, model: nn.Module, targets: tuple[str, ...] = DEFAULT_TARGETS, **kwargs: Any) -> NetworkConfig:
        """Read the sizes from the base model itself (hidden size, layers, each target's in/out features)."""
        layers, prefix = decoder_layers(model)
        shapes: dict[str, tuple[int, int]] = {}
        for target in targets:
            module = layers[0].get_submodule(target)
            shapes[target] = (int(module.in_features), int(module.out_features))
        return cls(
            hidden_size=int(model.config.hidden_size),
            num_layers=len(layers),
            targets=shapes,
            layer_prefix=prefix,
            **kwargs,
        )

    def module_path(self, layer: int, target: str) -> str:
        return f"{self.layer_prefix}.{layer}.{target}"

    def chunk_bytes(self, bytes_per_value: int = 4) -> int:
        """Size of one generated adapter (one chunk) on disk, without the shared bias."""
        return sum(self.rank * (i + o) for i, o in self.targets.values()) * self.num_layers * bytes_per_value


def decoder_layers(model: nn.Module) -> tuple[nn.ModuleList, str]:
    for name, module in model.named_modules():
        if name.endswith("layers") and isinstance(module, nn.ModuleList) and len(module) > 0:
            return module, name
    raise ValueError(f"{type(model).__name__}: no decoder layers found (expected a .layers ModuleList)")


class Hypernet(nn.Module):
    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        d = c.width
        self.norm_in = nn.LayerNorm(c.hidden_size)
        self.proj_in = nn.Linear(c.hidden_size, d)
        self.latents = nn.Parameter(torch.randn(c.rank, d) * 0.02)
        self.layer_embed = nn.Parameter(torch.randn(c.num_layers, d) * 0.02)
        self.norm_q = nn.LayerNorm(d)
        self.cross = nn.MultiheadAttention(d, c.heads, batch_first=True)
        self.norm_self = nn.LayerNorm(d)
        self.self_attn = nn.MultiheadAttention(d, c.heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.norm_out = nn.LayerNorm(d)
        names = list(c.targets)
        self.head_a = nn.ModuleDict({_key(t): nn.Linear(d, c.targets[t][0]) for t in names})
        self.head_b = nn.ModuleDict({_key(t): nn.Linear(d, c.targets[t][1]) for t in names})
        for head in self.head_b.values():
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.bias_a = nn.ParameterDict(
            {
                _key(t): nn.Parameter(torch.randn(c.num_layers, c.bias_rank, i) / math.sqrt(i))
                for t, (i, _) in c.targets.items()
            }
        )
        self.bias_b = nn.ParameterDict(
            {_key(t): nn.Parameter(torch.zeros(c.num_layers, o, c.bias_rank)) for t, (_, o) in c.targets.items()}
        )

    def forward(self, reading: Reading) -> list[Lora]:
        """One LoRA per chunk of the reading (without the bias LoRA; see `bias_lora`)."""
        c = self.config
        batch, layers, tokens, _ = reading.hidden.shape
        keys = self.proj_in(self.norm_in(reading.hidden.to(self.proj_in.weight.dtype)))
        keys = keys.reshape(batch * layers, tokens, -1)
        pad = (~reading.mask).repeat_interleave(layers, dim=0)
        q = (self.latents[None, None] + self.layer_embed[None, :, None]).expand(batch, layers, -1, -1)
        q = q.reshape(batch * layers, c.rank, -1)
        q = q + self.cross(self.norm_q(q), keys, keys, key_padding_mask=pad, need_weights=False)[0]
        h = self.norm_self(q)
        q = q + self.self_attn(h, h, h, need_weights=False)[0]
        q = q + self.mlp(self.norm_mlp(q))
        q = self.norm_out(q).reshape(batch, layers, c.rank, -1)
        loras: list[Lora] = [{} for _ in range(batch)]
        for target, (fan_in, _) in c.targets.items():
            a = self.head_a[_key(target)](q) / math.sqrt(fan_in)  # [batch, layers, r, in]
            b = self.head_b[_key(target)](q).transpose(-1, -2)  # [batch, layers, out, r]
            for row in range(batch):
                for layer in range(layers):
                    loras[row][c.module_path(layer, target)] = (a[row, layer], b[row, layer])
        return loras

    def bias_lora(self) -> Lora:
        c = self.config
        return {
            c.module_path(layer, target): (self.bias_a[_key(target)][layer], self.bias_b[_key(target)][layer])
            for target in c.targets
            for layer in range(c.num_layers)
        }


def _key(target: str) -> str:
    """ModuleDict keys may not contain dots."""
    return target.replace(".", "__")
