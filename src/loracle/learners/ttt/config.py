"""The `ttt` learner's options."""

from __future__ import annotations

from pydantic import Field

from loracle.learners.base import LearnerConfig


class TTTConfig(LearnerConfig):
    """Adapter shape, training, self-study data and answering; the defaults were chosen on dev data
    (docs/experiments/ttt.md)."""

    rank: int = Field(32, ge=1, description="LoRA rank of each document's adapter")
    alpha: float = Field(32.0, gt=0, description="LoRA alpha (the delta is scaled by alpha / rank)")
    layer_fraction: float = Field(0.25, gt=0, le=1, description="share of the upper layers whose MLP is adapted")
    mask_fraction: float = Field(
        0.3, ge=0, lt=1, description="share of MLP neurons, those firing most broadly on general text, never read"
    )
    steps_per_doc: int = Field(16, ge=0, description="Adam steps per document")
    batch_size: int = Field(4, ge=1, description="training pairs per step")
    lr: float = Field(1e-2, gt=0, description="learning rate")
    distill_weight: float = Field(
        1.0, ge=0, description="weight of the distillation term toward the in-context answer (qa_pairs)"
    )
    candidate_top_k: int = Field(
        256, ge=0, description="normalise the loss over the base model's top-k and the targets (0: all tokens)"
    )
    max_questions: int = Field(16, ge=0, description="most self-written questions per passage")
    passage_tokens: int = Field(256, ge=8, description="tokens per studied passage")
    qa_pairs: bool = Field(False, description="also train question -> answer pairs, distilled from the document")
    recite: bool = Field(True, description="answer by reading the adapters' recitations; false: adapter answers")
    recite_tokens: int = Field(288, ge=1, description="longest recitation, in tokens")
    recite_title: bool = Field(True, description="the best-routed adapter also recites from its title cue")
    route_top_k: int = Field(2, ge=1, description="most adapters a question is routed to")
    max_new_tokens: int = Field(48, ge=1, description="longest reply, in tokens")
    seed: int = Field(0, ge=0, description="seed of the adapters' initialisation and batch order")
