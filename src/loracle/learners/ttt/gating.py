"""What a ttt adapter reads: its inputs gated and whitened so that general text barely moves it.

A LoRA on an MLP's down projection reads the MLP's hidden neurons. Two ways keep its contribution on
general text small while text about its document still reaches it:
- gating: the input columns of the neurons that fire on most general text are zeroed (`mask_fraction`);
- whitening: its inputs are multiplied by (C + ridge * mean eigenvalue)^-1/2, C the inputs' second moment on
  general text, so a training step moves the adapter least along the directions general text fills and
  most along the rare ones its document lights up (a preconditioner; after training it is folded into A).
The general text is the bundled calibration sentences and general prompts (loracle/data). `GatedLoRA`
holds one document's factors, gate and whitener, read through the shared LoRA mechanism (learners.lora).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

from loracle.bundled import bundled_lines, general_prompts
from loracle.learners.lora import hooked, lora_delta
from loracle.learners.ttt.config import TTTConfig
from loracle.model import LoadedModel
from loracle.stored import stored

CALIBRATION_FILE = "calibration.txt"


def calibration_sentences() -> list[str]:
    """The bundled general-text corpus, one sentence per line."""
    return bundled_lines(CALIBRATION_FILE)


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


def input_moments(
    lm: LoadedModel, layers: Sequence[int], texts: Sequence[str], max_tokens: int = 12_000
) -> torch.Tensor:
    """[len(layers), in, in]: the second moment E[x x^T] of each layer's down-projection input over the tokens
    of `texts` (each text at most 512 tokens, `max_tokens` in all)."""
    modules = down_projections(lm.model)
    width = modules[layers[0]].in_features
    sums = torch.zeros(len(layers), width, width, dtype=torch.float64)
    seen = 0

    def recorder(slot: int):
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].detach().reshape(-1, width).double().cpu()
            sums[slot] += x.T @ x

        return hook

    handles = [modules[layer].register_forward_pre_hook(recorder(slot)) for slot, layer in enumerate(layers)]
    stack = getattr(lm.model, "model", lm.model)
    try:
        with torch.no_grad():
            for text in texts:
                ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"][:512]
                if seen >= max_tokens or not ids:
                    continue
                stack(input_ids=torch.tensor([ids], device=lm.device))
                seen += len(ids)
    finally:
        for handle in handles:
            handle.remove()
    return sums / max(seen, 1)


def inverse_root(moment: torch.Tensor, ridge: float) -> torch.Tensor:
    """(M + ridge * mean eigenvalue * I)^-1/2 of a symmetric positive semi-definite M, in float32."""
    values, vectors = torch.linalg.eigh(moment)
    values = values.clamp(min=0)
    values = values + ridge * values.mean()
    return (vectors * values.rsqrt()) @ vectors.T


def whiteners(lm: LoadedModel, layers: Sequence[int], ridge: float) -> torch.Tensor:
    """[len(layers), in, in]: each layer's whitener on the bundled general text (see the module docstring).

    Computed once per base model, layers and ridge (a forward pass over about 12k tokens and an
    eigendecomposition per layer) and kept (loracle/stored.py, under <cache>/ttt/).
    """
    texts = [*calibration_sentences(), *general_prompts()]

    def build() -> dict[str, torch.Tensor]:
        moments = input_moments(lm, layers, texts)
        return {"whiteners": torch.stack([inverse_root(m, ridge) for m in moments]).float()}

    return stored("ttt", "whiteners", f"{lm.fingerprint}|{list(layers)}|{ridge}|{texts}", build)["whiteners"]


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
#: after training
STORAGE_DTYPE = torch.float16


class BroadGate:
    """An adapter's gate on the broad neurons of its `layers`: `keep` [layers, neurons] is 0 on those never used."""

    layers: list[int]
    keep: torch.Tensor
    gated: bool

    def set_broad(self, broad: torch.Tensor) -> None:
        self.keep = (~broad).float().to(self.keep.device)
        self.gated = True

    def find_gate(self, lm: LoadedModel, fraction: float) -> None:
        """Gate the `fraction` of neurons firing most broadly (one calibration forward pass), unless gated."""
        if not self.gated and fraction > 0:
            self.set_broad(broad_neuron_mask(lm, self.layers, fraction))


class GatedLoRA(BroadGate, nn.Module):
    """LoRA factors for the down projections of `layers`; `keep` [layers, neurons] is 0 on inputs never read;
    `whitener` [layers, neurons, neurons], while set, multiplies the inputs A reads (see `fold_whitener`)."""

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
        self.whitener: torch.Tensor | None = None
        self._fixed_a: list[torch.Tensor] | None = None  # effective A's held for one training step (`one_step`)

    def round_to_storage(self) -> None:
        """Round the factors to STORAGE_DTYPE, as checkpoints keep them, so a learned adapter answers exactly
        as it will after a save and a load."""
        with torch.no_grad():
            for factor in (self.A, self.B):
                factor.copy_(factor.to(STORAGE_DTYPE))

    def prepare(self, lm: LoadedModel, config: TTTConfig) -> None:
        """Find the gate and the whitener the config asks for (each once: they are the same for every document)."""
        self.find_gate(lm, config.mask_fraction)
        if self.whitener is None and config.whiten_ridge is not None:
            self.set_whitener(whiteners(lm, self.layers, config.whiten_ridge))

    #: training steps take lr as it is; the first adapted layer's output changes only by `first_delta` of what its
    #: down projection reads, so it can be folded into the cached states (training.layer_inputs)
    lr_scale = 1.0

    def hooked(self, lm: LoadedModel) -> contextlib.AbstractContextManager[None]:
        """The adapter added to the model's forward passes while the context is open."""
        return hooked(lm.model, self.factors(), self.scale)

    def first_delta(self, x: torch.Tensor) -> torch.Tensor:
        """What the adapter adds to the first adapted layer's output for what its down projection reads, `x`."""
        return self.delta(0, x)

    def finished(self) -> GatedLoRA:
        """The trained adapter as the learner keeps it: the whitener folded into A, rounded as it is stored."""
        self.fold_whitener()
        self.round_to_storage()
        return self

    def set_whitener(self, whitener: torch.Tensor) -> None:
        self.whitener = whitener.to(self.A.device)

    def fold_whitener(self) -> None:
        """Make A read the inputs plainly: A <- (A * keep) W, the gate opened and the whitener dropped, so the
        adapter adds exactly what it added before and is saved and exported as a plain LoRA."""
        if self.whitener is None:
            return
        with torch.no_grad():
            self.A.copy_(torch.stack([self.effective_a(slot) for slot in range(len(self.layers))]))
        self.keep = torch.ones_like(self.keep)
        self.whitener = None

    @contextlib.contextmanager
    def one_step(self) -> Iterator[None]:
        """Within: each layer's effective A is computed once and reused by every read (a step reads each several
        times: once per stack pass and per row of the first layer), with its gradient flowing back to A once.
        Leave before the factors change (the optimizer's step)."""
        self._fixed_a = [self.effective_a(slot) for slot in range(len(self.layers))]
        try:
            yield
        finally:
            self._fixed_a = None

    def effective_a(self, slot: int) -> torch.Tensor:
        """The A that multiplies layer `self.layers[slot]`'s plain input: gated, then whitened while set."""
        if self._fixed_a is not None:
            return self._fixed_a[slot]
        a = self.A[slot] * self.keep[slot]
        return a @ self.whitener[slot] if self.whitener is not None else a

    def factors(self) -> GatedFactors:
        """Module path -> (A with the gate folded in, B), computed from the live parameters whenever read."""
        return GatedFactors(self)

    def delta(self, slot: int, x: torch.Tensor) -> torch.Tensor:
        """What the adapter adds to the output of layer `self.layers[slot]`'s down projection for its input `x`."""
        return lora_delta(x, self.effective_a(slot), self.B[slot], self.scale)


class GatedFactors(Mapping[str, tuple[torch.Tensor, torch.Tensor]]):
    """A GatedLoRA's factors by module path, as learners.lora reads a LoRA."""

    def __init__(self, lora: GatedLoRA) -> None:
        self.lora = lora
        self.slots = {layer_path(layer): slot for slot, layer in enumerate(lora.layers)}

    def __getitem__(self, path: str) -> tuple[torch.Tensor, torch.Tensor]:
        slot = self.slots[path]
        return self.lora.effective_a(slot), self.lora.B[slot]

    def __iter__(self) -> Iterator[str]:
        return iter(self.slots)

    def __len__(self) -> int:
        return len(self.slots)
