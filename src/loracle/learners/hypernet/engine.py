"""The hypernetwork at use time: a base model plus a trained network, turning text into chunk adapters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from loracle.errors import DocumentError
from loracle.learners.hypernet.checkpoint import load_design, shipped_path
from loracle.learners.hypernet.config import DEFAULT_CHUNK_TOKENS
from loracle.learners.hypernet.network import Hypernet
from loracle.learners.hypernet.reading import DocPrompt, chunk_ids, doc_ids, read_chunks
from loracle.learners.lora import Lora, concat_ranks
from loracle.model.loader import LoadedModel


@dataclass
class DocText:
    """A document as the hypernetwork reads it."""

    text: str
    doc_id: str = "text"
    title: str = ""


@dataclass
class ChunkAdapter:
    """The adapter the hypernetwork wrote for one chunk of a document, with the chunk's text for routing."""

    doc_id: str
    title: str
    index: int
    text: str
    tokens: int
    lora: Lora


class DocToLora:
    """Write documents (or task descriptions) into LoRA adapters with one forward pass per chunk."""

    def __init__(self, lm: LoadedModel, net: Hypernet, chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> None:
        self.lm = lm
        self.net = net.to(lm.device).eval()
        self.chunk_tokens = chunk_tokens
        self.prompt = DocPrompt.for_tokenizer(lm.tokenizer)

    @classmethod
    def from_checkpoint(cls, lm: LoadedModel, path: Path | None = None, **kwargs) -> DocToLora:
        """Load `path` (a checkpoint, or a training run folder holding one), or the one shipped for the base model."""
        return cls(lm, load_design(path or shipped_path(lm.name), lm.name, lm.fingerprint, Hypernet), **kwargs)

    def internalise(self, text: str, doc_id: str = "text", title: str = "") -> list[ChunkAdapter]:
        """One adapter per chunk of `text` (batch 1 per chunk, the document read once)."""
        return self.internalise_many([DocText(text, doc_id, title)], batch=1)[0]

    def internalise_many(self, docs: Sequence[DocText], batch: int) -> list[list[ChunkAdapter]]:
        """Each document's chunk adapters, reading up to `batch` chunks (of any of the documents) per forward.

        Chunks of similar length share a forward, so right padding wastes little. Raises DocumentError
        naming the first empty document before any forward runs."""
        tokenizer = self.lm.tokenizer
        jobs: list[tuple[int, int, list[int]]] = []  # (document, chunk index, ids)
        for number, doc in enumerate(docs):
            chunks = chunk_ids(doc_ids(tokenizer, doc.text), self.chunk_tokens)
            if not chunks:
                raise DocumentError(f"{doc.doc_id}: empty document, nothing to learn")
            jobs += [(number, index, chunk) for index, chunk in enumerate(chunks)]
        jobs.sort(key=lambda job: len(job[2]))
        found: list[dict[int, ChunkAdapter]] = [{} for _ in docs]
        step = max(1, batch)
        with torch.no_grad():
            for first in range(0, len(jobs), step):
                group = jobs[first : first + step]
                loras = self.net(read_chunks(self.lm.model, self.prompt, [chunk for _, _, chunk in group]))
                for (number, index, chunk), lora in zip(group, loras, strict=True):
                    doc = docs[number]
                    weights = {k: (a.detach(), b.detach()) for k, (a, b) in lora.items()}
                    found[number][index] = ChunkAdapter(
                        doc.doc_id, doc.title, index, tokenizer.decode(chunk), len(chunk), weights
                    )
        return [[adapters[i] for i in sorted(adapters)] for adapters in found]

    def task_adapter(self, description: str) -> Lora:
        """Text mode: a task description in, one adapter out (the description read like a document)."""
        return self.combine(self.internalise(description, doc_id="task"))

    def bias(self) -> Lora:
        return {k: (a.detach(), b.detach()) for k, (a, b) in self.net.bias_lora().items()}

    def combine(self, adapters: Sequence[ChunkAdapter]) -> Lora:
        """The learned bias LoRA plus the chunk adapters, by rank concatenation (their deltas add up)."""
        return concat_ranks([self.bias(), *(a.lora for a in adapters)])
