"""The `hypernet` learner's options."""

from __future__ import annotations

from pydantic import Field

from loracle.learners.base import LearnerConfig

#: a 1,000-token chunk -> one rank-8 adapter (~2 MB in fp32 for SmolLM2-135M)
DEFAULT_CHUNK_TOKENS = 1024


class HypernetConfig(LearnerConfig):
    """Which network writes the adapters, how documents are cut for it, and how questions are routed."""

    checkpoint: str | None = Field(
        None, description="folder of a trained hypernetwork (null: the one shipped for the base model)"
    )
    chunk_tokens: int = Field(DEFAULT_CHUNK_TOKENS, ge=8, description="tokens per chunk; one adapter per chunk")
    top_k: int = Field(2, ge=1, description="most chunk adapters applied to a question")
    min_coverage: float = Field(
        0.5, ge=0, le=1, description="least share of the question's words a chunk must hold to be applied"
    )
    batch: int = Field(1, ge=1, description="chunks read per forward pass when learning several documents")
    max_new_tokens: int = Field(48, ge=1, description="longest reply, in tokens")
