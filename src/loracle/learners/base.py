"""The learner interface: every way of learning documents has the same shape, so one harness measures all.

A learner is built as `Learner(lm, config)`: the base model and its validated options, one pydantic model
per learner (`learners/<name>/config.py`, a `LearnerConfig`). Checkpoints store the config and read it back
through the same validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from loracle.documents import Document


class LearnerConfig(BaseModel):
    """A learner's options: unknown keys are refused, values are checked against their ranges, and each field's
    description is its `-o` help. Frozen: a learner's options change only by building another learner."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class Citation:
    doc_id: str
    title: str
    snippet: str = ""
    line: int | None = None


@dataclass
class Answer:
    text: str
    citations: list[Citation] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class LearnReport:
    learner: str
    documents: int
    tokens: int
    seconds: float
    bytes_on_disk: int = 0
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Learner(Protocol):
    name: str
    config: LearnerConfig

    def learn(self, docs: Sequence[Document]) -> LearnReport: ...

    def answer(self, question: str) -> Answer: ...

    def reset(self) -> None: ...

    def save(self, path: Path) -> None: ...

    def load(self, path: Path) -> None: ...
