"""The `playbook` learner's options."""

from __future__ import annotations

from pydantic import Field

from loracle.learners.base import LearnerConfig


class PlaybookConfig(LearnerConfig):
    """How much practice each document gets and how large the playbook may grow."""

    questions_per_doc: int = Field(3, ge=1, description="practice questions the writer LLM writes per document")
    max_bullets: int = Field(30, ge=1, description="most bullets in the playbook (the worst is evicted)")
    max_chars: int = Field(240, ge=16, description="longest bullet, in characters")
    max_new_tokens: int = Field(48, ge=1, description="longest reply, in tokens")
    writer_max_tokens: int = Field(256, ge=16, description="longest writer LLM reply, in tokens")
