"""The `kstore` learner's options."""

from __future__ import annotations

from pydantic import Field

from loracle.learners.base import LearnerConfig


class KStoreConfig(LearnerConfig):
    """Where keys come from, when the store is consulted and how much it weighs; the defaults were chosen on
    dev data (docs/experiments/kstore.md)."""

    layer: int = Field(
        12, description="hidden state used as key (index into hidden_states, 0 = embeddings; past the depth: last)"
    )
    k: int = Field(8, ge=1, description="neighbours looked up per step")
    lam: float = Field(0.5, ge=0, le=1, description="weight of the neighbours' distribution when consulted")
    temperature: float = Field(0.05, gt=0, description="softmax temperature over the neighbours' similarities")
    threshold: float = Field(0.2, ge=-1, le=1, description="consult only when the nearest key is at least this similar")
    window: int = Field(256, ge=1, description="tokens per forward pass when learning")
    skip: int = Field(4, ge=0, description="positions at the start of a document not stored")
    scope: int = Field(
        2, ge=0, description="neighbours only from the stored sentences best matching the question (0: all)"
    )
    gate_by_confidence: bool = Field(False, description="scale lam by the model's doubt (1 - its top probability)")
    max_confidence: float = Field(
        0.5, ge=0, description="consult only at steps where the model's top probability is below this (over 1: always)"
    )
    min_question_match: float = Field(
        0.526, ge=-1, le=1, description="consult only for a question matching a stored sentence this well (-1: always)"
    )
    max_new_tokens: int = Field(48, ge=1, description="longest reply, in tokens")
