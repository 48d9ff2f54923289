"""The dual-MLP variant of a ttt adapter: a frozen and a trainable copy of each upper layer's MLP, blended.

In each adapted layer (the upper `layer_fraction` of the layers, as for the gated LoRA) each of the MLP's three
projections (gate, up, down) has its frozen base weight W and a trainable copy W + D, D zero at the start, and
the layer computes with their blend W + alpha (D * K):
- the blend is of the weights, not of the two MLPs' outputs, so the blended MLP is the base one plus a linear
  delta on each projection, which is what a PEFT LoRA holds (see `export`);
- K gates the copy sparsely: the neurons firing most broadly on general text (`mask_fraction`,
  gating.broad_neuron_mask) keep their frozen weights (their rows of gate and up, their column of down), so
  the copy changes only what the rarer neurons a document lights up compute;
- alpha decays as documents are learned: the copy of the k-th document a learner learns (k the documents it
  holds already) is blended in at alpha = 1 / (1 + ALPHA_DECAY k), so the same training steps move the
  model less with every document, and a later document's copy, stacked with earlier ones, weighs less.

Training runs the copy as forward hooks (learners.lora.hooked_deltas) with the learner's self-study data and
loss (training.py). Once trained, each projection's alpha (D * K) is cut to its best rank-EXPORT_RANK
approximation (an SVD) and rounded to half precision, and that LoRA is the adapter: the learner answers with
it, saves it, and writes it as the same plain PEFT adapter as the gated LoRA, so every door reads it alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from loracle.learners.lora import Lora, hooked_deltas
from loracle.learners.ttt.config import TTTConfig
from loracle.learners.ttt.gating import STORAGE_DTYPE, BroadGate
from loracle.model import LoadedModel

#: alpha of the k-th document's copy: 1 / (1 + ALPHA_DECAY k)
ALPHA_DECAY = 0.1
#: the LoRA rank each projection's delta is cut to: 3 projections x 8 layers of SmolLM2-135M at rank 16 in
#: half precision are 1.6 MB, under issue 37's 2 MB per document
EXPORT_RANK = 16
#: Adam's steps on whole weights are this share of `lr` (a LoRA factor's step moves a weight far less)
LR_SCALE = 0.03
PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


def blend_alpha(learned: int) -> float:
    """The alpha of the copy of a document learned after `learned` others."""
    return 1.0 / (1.0 + ALPHA_DECAY * learned)


def mlp_paths(layer: int) -> list[str]:
    """The module paths of layer `layer`'s MLP projections, as PEFT names them."""
    return [f"model.layers.{layer}.mlp.{name}" for name in PROJECTIONS]


class DualMLP(BroadGate, nn.Module):
    """The trainable copies' differences D from the frozen MLPs of `layers`, their gate and their alpha; the
    frozen MLPs are the model's own weights (never changed). `keep` [layers, neurons] is 0 on broad neurons."""

    def __init__(self, lm: LoadedModel, layers: Sequence[int], alpha: float) -> None:
        super().__init__()
        self.layers = list(layers)
        self.alpha = alpha
        mlp = lm.model.model.layers[self.layers[0]].mlp
        neurons, width = mlp.gate_proj.weight.shape
        count = len(self.layers)
        self.gate = nn.Parameter(torch.zeros(count, neurons, width, device=lm.device))
        self.up = nn.Parameter(torch.zeros(count, neurons, width, device=lm.device))
        self.down = nn.Parameter(torch.zeros(count, width, neurons, device=lm.device))
        self.register_buffer("keep", torch.ones(count, neurons, device=lm.device))
        self.gated = False
        self._fixed: dict[str, torch.Tensor] | None = None  # the blended deltas held for one step (`one_step`)

    def prepare(self, lm: LoadedModel, config: TTTConfig) -> None:
        """Find the broad neurons to gate (one calibration forward pass), once."""
        self.find_gate(lm, config.mask_fraction)

    def deltas(self) -> dict[str, torch.Tensor]:
        """Module path -> alpha (D * K), what the blend adds to that projection's weight."""
        if self._fixed is not None:
            return self._fixed
        found = {}
        for slot, layer in enumerate(self.layers):
            keep = self.keep[slot]
            gate, up, down = mlp_paths(layer)
            found[gate] = self.gate[slot] * keep[:, None] * self.alpha
            found[up] = self.up[slot] * keep[:, None] * self.alpha
            found[down] = self.down[slot] * keep[None, :] * self.alpha
        return found

    #: training steps take LR_SCALE x lr; the first adapted layer's whole MLP changes, so it is not folded into
    #: the cached states (training.Trainable.first_delta)
    lr_scale = LR_SCALE
    first_delta = None

    def hooked(self, lm: LoadedModel) -> contextlib.AbstractContextManager[None]:
        """The blend in the model's forward passes while the context is open (the weights untouched)."""
        return hooked_deltas(lm.model, [p for layer in self.layers for p in mlp_paths(layer)], self._delta)

    def _delta(self, path: str, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.deltas()[path].to(x.dtype))

    @contextlib.contextmanager
    def one_step(self) -> Iterator[None]:
        """Within: the blended deltas are computed once and reused by every read of one training step."""
        self._fixed = self.deltas()
        try:
            yield
        finally:
            self._fixed = None

    def finished(self) -> ExportedDual:
        """The trained blend as the LoRA the learner keeps (see `export`)."""
        lora, error = self.export()
        return ExportedDual(self.layers, lora, error, self.alpha)

    def export(self, rank: int = EXPORT_RANK) -> tuple[Lora, float]:
        """The blend as a LoRA at scale 1: each projection's delta cut to its best rank-`rank` approximation and
        rounded to STORAGE_DTYPE (kept in float32). Returns it and the largest relative error of a cut, in the
        Frobenius norm: |delta - B A| / |delta| (0 for a delta that is all zero)."""
        factors: Lora = {}
        worst = 0.0
        with torch.no_grad():
            for path, delta in self.deltas().items():
                u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
                root = s[:rank].sqrt()
                a = (root[:, None] * vh[:rank]).to(STORAGE_DTYPE).float()
                b = (u[:, :rank] * root[None, :]).to(STORAGE_DTYPE).float()
                factors[path] = (a, b)
                norm = float(delta.norm())
                if norm > 0:
                    worst = max(worst, float((delta - b @ a).norm()) / norm)
        return factors, worst


@dataclass
class ExportedDual:
    """A trained dual MLP as the learner keeps it: the LoRA of its blend (at scale 1), the largest relative error
    of its rank cut, and the alpha it was blended at."""

    layers: list[int]
    lora: Lora
    error: float
    alpha: float
    scale: float = 1.0

    def factors(self) -> Lora:
        return self.lora
