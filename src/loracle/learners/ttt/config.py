"""The `ttt` learner's options."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from loracle.learners.base import LearnerConfig
from loracle.model.precision import PRECISION_HELP, Precision


class TTTConfig(LearnerConfig):
    """Adapter shape, what it reads, training, self-study and answering; the defaults were chosen on dev data
    (docs/experiments/ttt.md)."""

    variant: Literal["gated_lora", "dual_mlp"] = Field(
        "gated_lora",
        description="what each document trains: a whitened LoRA on the down projections, or a gated trainable copy "
        "of the MLPs blended with the frozen ones (saved as a rank-16 LoRA; learners/ttt/dual.py)",
    )
    rank: int = Field(32, ge=1, description="LoRA rank of each document's adapter")
    alpha: float = Field(32.0, gt=0, description="LoRA alpha (the delta is scaled by alpha / rank)")
    layer_fraction: float = Field(0.25, gt=0, le=1, description="share of the upper layers whose MLP is adapted")
    mask_fraction: float = Field(
        0.0, ge=0, lt=1, description="share of MLP neurons, those firing most broadly on general text, never read"
    )
    whiten_ridge: float | None = Field(
        0.1, gt=0, description="whiten the adapter's inputs by general text, with this ridge (none: off)"
    )
    steps_per_doc: int = Field(96, ge=0, description="Adam steps per document")
    batch_size: int = Field(8, ge=1, description="training pairs per step")
    lr: float = Field(3e-3, gt=0, description="learning rate")
    precision: Precision = Field("auto", description=PRECISION_HELP)
    distill_weight: float = Field(
        1.0, ge=0, description="weight of the distillation term toward the teacher (passage in the prompt)"
    )
    candidate_top_k: int = Field(
        256, ge=0, description="normalise the loss over the base model's top-k and the targets (0: all tokens)"
    )
    general_examples: int = Field(
        119, ge=0, description="general prompts trained to keep the base model's reply (at most 119)"
    )
    general_reading: int = Field(
        16, ge=0, le=1000, description="generated reading prompts (a paragraph in the prompt) trained likewise"
    )
    max_sentences: int = Field(16, ge=1, description="most sentences studied per passage")
    answer_spans: int = Field(2, ge=0, description="names, numbers or dates per sentence asked about")
    keyword_cues: int = Field(3, ge=0, description="keyword queries per sentence")
    passage_tokens: int = Field(256, ge=8, description="tokens per studied passage")
    route_top_k: int = Field(1, ge=1, description="most adapters a question is routed to (stacked)")
    min_coverage: float = Field(
        0.5, ge=0, le=1, description="share of a question's words an adapter's keys must hold to be routed to"
    )
    min_similarity: float | None = Field(
        0.7, ge=-1, le=1, description="also route to adapters whose nearest trained question is this close (none: off)"
    )
    leave_general: bool = Field(
        True,
        description="route a question nearer the general prompts than every adapter's trained questions to none",
    )
    max_new_tokens: int = Field(48, ge=1, description="longest reply, in tokens")
    seed: int = Field(0, ge=0, description="seed of the adapters' initialisation and batch order")
