"""Sparse gating: find the MLP neurons that fire broadly on general text, so learning can leave them alone.

A LoRA on an MLP's down projection reads the MLP's hidden neurons. If its input columns for the
neurons that fire on most general text are zeroed, the adapter's contribution on general text is
close to zero (those neurons carry general ability), while text about the learned documents —
which lights up rarer neurons — still reaches it. The calibration corpus is a few hundred sentences
of everyday general knowledge shipped in loracle/data/calibration.txt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources

import torch
from torch import nn

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
