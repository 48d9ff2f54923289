"""Sparse gating: the ttt adapters leave alone the MLP neurons that fire broadly on general text.

A LoRA on an MLP's down projection reads the MLP's hidden neurons. If its input columns for the
neurons that fire on most general text are zeroed, the adapter's contribution on general text is
close to zero (those neurons carry general ability), while text about the learned documents —
which lights up rarer neurons — still reaches it. The calibration corpus is a few hundred sentences
of everyday general knowledge shipped in loracle/data/calibration.txt. `GatedLoRA` holds one document's
factors and its gate, read through the shared LoRA mechanism (learners.lora).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources

import torch
from torch import nn

from loracle.learners.lora import lora_delta
from loracle.model import LoadedModel

CALIBRATION_FILE = "calibration.txt"


def calibration_sentences() -> list[str]:
    """The bundled general-text corpus, one sentence per line."""
    text = resources.files("loracle").joinpath("data", CALIBRATION_FILE).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def down_projections(model: nn.Module) -> list[nn.Linear]:
    """Each decoder layer's MLP down projection (Llama, Qwen, Mistral, SmolLM layouts), in layer order."""
    layers = getattr(getattr(model, "model", model), "layers", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__}: no decoder layers found (expected model.layers)")
    return [layer.mlp.down_proj for layer in layers]


def layer_path(index: int) -> str:
    """The module path of layer `index`'s down projection, as PEFT names it."""
    return f"model.layers.{index}.mlp.down_proj"


def firing_rates(lm: LoadedModel, layers: Sequence[int], texts: Sequence[str], max_tokens: int = 1024) -> torch.Tensor:
    """[len(layers), neurons]: the fraction of calibration tokens on which each neuron is active.

    A neuron counts as active on a token when its magnitude exceeds the layer's mean magnitude.
    """
    modules = down_projections(lm.model)
    ids = lm.tokenizer(" ".join(texts), add_special_tokens=False)["input_ids"][:max_tokens]
    counts: dict[int, torch.Tensor] = {}

    def recorder(index: int):
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            act = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).float()
            counts[index] = (act > act.mean()).float().mean(dim=0)

        return hook

    handles = [modules[i].register_forward_pre_hook(recorder(i)) for i in layers]
    stack = getattr(lm.model, "model", lm.model)  # the decoder layers without the output head: no logits needed
    try:
        with torch.no_grad():
            stack(input_ids=torch.tensor([ids], device=lm.device))
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack([counts[i].cpu() for i in layers])


_MASK_CACHE: dict[str, torch.Tensor] = {}


def broad_neuron_mask(lm: LoadedModel, layers: Sequence[int], fraction: float) -> torch.Tensor:
    """[len(layers), neurons] bool: True for the `fraction` of each layer's neurons that fire most broadly.

    Remembered per base model, layers and fraction for the life of the process (it costs one forward pass).
    """
    key = hashlib.sha256(f"{lm.fingerprint}|{list(layers)}|{fraction}".encode()).hexdigest()
    if key not in _MASK_CACHE:
        rates = firing_rates(lm, layers, calibration_sentences())
        count = round(fraction * rates.shape[1])
        mask = torch.zeros_like(rates, dtype=torch.bool)
        if count > 0:
            top = torch.topk(rates, count, dim=1).indices
            mask.scatter_(1, top, True)
        _MASK_CACHE[key] = mask
    return _MASK_CACHE[key].clone()


#: checkpoints keep the LoRA factors in half precision, half the disk of float32; they are rounded once, right
#: after training (on 6 SQuAD dev questions the rounded and float32 adapters recited the same 288 tokens)
STORAGE_DTYPE = torch.float16


class GatedLoRA(nn.Module):
    """LoRA factors for the down projections of `layers`; `keep` [layers, neurons] is 0 on inputs never read."""

    def __init__(self, layers: Sequence[int], in_features: int, out_features: int, rank: int, alpha: float) -> None:
        super().__init__()
        self.layers = list(layers)
        self.rank = rank
        self.alpha = alpha
        self.scale = alpha / rank
        self.A = nn.Parameter(torch.randn(len(layers), rank, in_features) / in_features**0.5)
        self.B = nn.Parameter(torch.zeros(len(layers), out_features, rank))
        self.register_buffer("keep", torch.ones(len(layers), in_features))
        self.gated = False  # the mask is found (one calibration forward pass) only when training first needs it

    def round_to_storage(self) -> None:
        """Round the factors to STORAGE_DTYPE, as checkpoints keep them, so a learned adapter answers exactly
        as it will after a save and a load."""
        with torch.no_grad():
            for factor in (self.A, self.B):
                factor.copy_(factor.to(STORAGE_DTYPE))

    def set_broad(self, broad: torch.Tensor) -> None:
        self.keep = (~broad).float().to(self.keep.device)
        self.gated = True

    def factors(self) -> GatedFactors:
        """Module path -> (A with the gate folded in, B), computed from the live parameters whenever read."""
        return GatedFactors(self)

    def delta(self, slot: int, x: torch.Tensor) -> torch.Tensor:
        """What the adapter adds to the output of layer `self.layers[slot]`'s down projection for its input `x`."""
        return lora_delta(x, self.A[slot] * self.keep[slot], self.B[slot], self.scale)


class GatedFactors(Mapping[str, tuple[torch.Tensor, torch.Tensor]]):
    """A GatedLoRA's factors by module path, as learners.lora reads a LoRA."""

    def __init__(self, lora: GatedLoRA) -> None:
        self.lora = lora
        self.slots = {layer_path(layer): slot for slot, layer in enumerate(lora.layers)}

    def __getitem__(self, path: str) -> tuple[torch.Tensor, torch.Tensor]:
        slot = self.slots[path]
        return self.lora.A[slot] * self.lora.keep[slot], self.lora.B[slot]

    def __iter__(self) -> Iterator[str]:
        return iter(self.slots)

    def __len__(self) -> int:
        return len(self.slots)
