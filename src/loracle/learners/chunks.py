"""Chunks a one-pass learner wrote adapters for, routed by the words of a question (hypernet, memory).

Each learner keeps its chunks (anything with doc_id, title, index, text and tokens, plus its own adapter) in
`self.chunks`; this mixin routes questions over their texts, cites them, and lists them for a checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar

from loracle.learners.base import Citation
from loracle.routing import ChunkRouter


class Chunk(Protocol):
    doc_id: str
    title: str
    index: int
    text: str
    tokens: int


C = TypeVar("C", bound=Chunk)


class RoutedChunks(Generic[C]):
    """`chunks`, the router over their texts, and the config's `top_k` and `min_coverage` applied to a question."""

    config: Any  # the learner's config: top_k, min_coverage
    chunks: list[C]
    router: ChunkRouter

    def reset(self) -> None:
        self.set_chunks([])

    def set_chunks(self, chunks: list[C]) -> None:
        self.chunks = chunks
        self.router = ChunkRouter([c.text for c in chunks])

    def route(self, question: str) -> list[C]:
        """The chunks that hold at least `min_coverage` of the question's words, best first, at most top_k."""
        c = self.config
        return [self.chunks[i] for i in self.router.top(question, c.top_k, c.min_coverage)]


def citations(chunks: Sequence[Chunk]) -> list[Citation]:
    """The chunks an answer came from, as citations (the first 160 characters of each)."""
    return [Citation(c.doc_id, c.title, c.text[:160]) for c in chunks]


def chunk_records(chunks: Sequence[Chunk]) -> list[dict[str, Any]]:
    """What a checkpoint keeps of each chunk beside its adapter's tensors."""
    return [
        {"doc_id": c.doc_id, "title": c.title, "index": c.index, "text": c.text, "tokens": c.tokens} for c in chunks
    ]
