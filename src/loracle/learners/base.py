"""The learner interface: every way of learning documents has the same shape, so one harness measures all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from loracle.documents import Document


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

    def learn(self, docs: Sequence[Document]) -> LearnReport: ...

    def answer(self, question: str) -> Answer: ...

    def reset(self) -> None: ...

    def save(self, path: Path) -> None: ...

    def load(self, path: Path) -> None: ...
