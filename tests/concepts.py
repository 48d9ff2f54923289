"""A concept embedder standing in for MiniLM where a test needs embeddings in milliseconds: words of one
concept share a direction, other words hash to their own (the real model: tests/integration)."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np

CONCEPTS = {
    "cat": 0, "cats": 0, "feline": 0, "kitten": 0, "felines": 0,
    "car": 1, "automobile": 1, "vehicle": 1, "engine": 1,
    "river": 2, "stream": 2, "water": 2,
}  # fmt: skip


class ConceptEmbedder:
    """Words of one concept share a direction; other words hash to their own. Deterministic, instant."""

    name = "test-concepts"
    dim = 64

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                column = CONCEPTS.get(word, 3 + zlib.crc32(word.encode()) % (self.dim - 3))
                out[row, column] += 1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
        return out
