"""The `context` learner's options."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from loracle.learners.base import LearnerConfig

#: a user's message this many tokens long or longer carries a passage of its own
OWN_PASSAGE_TOKENS = 64


class ContextConfig(LearnerConfig):
    """Retrieval, gating and decoding settings; the defaults were chosen on dev data
    (docs/experiments/context.md)."""

    top_k: int = Field(2, ge=1, description="most passages in the prompt (one per question the message asks)")
    split_questions: bool = Field(
        True,
        description="one best passage per question the message asks (cut after '?'); false: the best top_k",
    )
    context_tokens: int = Field(900, ge=1, description="token budget of the passages in the prompt")
    chunk_tokens: int = Field(200, ge=8, description="tokens per learned chunk")
    min_similarity: float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description="gate: least cosine of the question to a sentence of the best hits (null: the embedder's own)",
    )
    order: Literal["relevance", "document"] = Field(
        "document", description="passages in document order, or by relevance with the best nearest the question"
    )
    logit_bias: float = Field(2.0, ge=0.0, description="logit bias toward the passages' tokens, spent once used")
    own_passage_tokens: int | None = Field(
        OWN_PASSAGE_TOKENS,
        ge=0,
        description="a message this many tokens long is biased toward too (null: never)",
    )
    max_new_tokens: int = Field(64, ge=1, description="longest reply, in tokens")
    vectors: bool = Field(True, description="hybrid search with MiniLM vectors; false: BM25 alone, no gate")
