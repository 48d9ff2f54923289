"""The `memory` learner's options."""

from __future__ import annotations

from pydantic import Field

from loracle.learners.base import LearnerConfig


class MemoryConfig(LearnerConfig):
    """Which network writes the prefixes (it also sets the chunk size it reads), and how questions are routed."""

    checkpoint: str | None = Field(
        None, description="a trained memory-token network: its run folder or checkpoint (null: the one shipped)"
    )
    top_k: int = Field(1, ge=1, description="most chunk prefixes placed before a question")
    min_coverage: float = Field(
        0.5, ge=0, le=1, description="least share of the question's words a chunk must hold to be used"
    )
    max_new_tokens: int = Field(48, ge=1, description="longest reply, in tokens")
