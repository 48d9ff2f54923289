"""The `memory` learner: documents into prefix adapters, one forward pass per chunk (memory tokens).

learn() reads each chunk once through the base model and the memory-token network (DocToPrefix): the chunk's
adapter is the key/value cache of m memory positions. answer() routes the question to the best-matching chunks
(loracle.routing), places their prefixes one after another before it and answers in one decode; a question no
chunk covers gets the base model alone. compile_document() writes a document's chunks, joined, as one plain PEFT
prefix-tuning folder, which `loracle ask --kb` routes to by its sentences as it routes LoRA adapters.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from loracle.adapters.compiler import CompileReport
from loracle.documents import Document
from loracle.errors import DocumentError, LoracleError
from loracle.learners.base import Answer, LearnReport
from loracle.learners.checkpoint import load_checkpoint, save_checkpoint, stored_config
from loracle.learners.chunks import RoutedChunks, chunk_records, citations
from loracle.learners.hypernet.checkpoint import MEMORY_FOLDER, shipped_path
from loracle.learners.hypernet.prefix_engine import DocToPrefix
from loracle.learners.hypernet.reading import chunk_ids, doc_ids
from loracle.learners.memory.config import MemoryConfig
from loracle.learners.ttt.learner import sentence_keys
from loracle.model import GenerationConfig, LoadedModel, generate_chat, question_messages
from loracle.model.prefix import join_prefixes


@dataclass
class MemoryChunk:
    """One chunk of a document and its prefix, [layers, 2, kv_heads, m, head_dim]."""

    doc_id: str
    title: str
    index: int
    text: str
    tokens: int
    kv: torch.Tensor


class MemoryLearner(RoutedChunks[MemoryChunk]):
    name = "memory"

    def __init__(self, lm: LoadedModel, config: MemoryConfig | None = None, *, engine: DocToPrefix | None = None):
        self.lm = lm
        self.config = config or MemoryConfig()
        self.engine = engine or self._engine(self.config)
        self.reset()

    def _engine(self, config: MemoryConfig) -> DocToPrefix:
        if config.checkpoint:
            return DocToPrefix.from_checkpoint(self.lm, Path(config.checkpoint).expanduser())
        shipped = shipped_path(self.lm.name, MEMORY_FOLDER)
        if not shipped.is_dir():
            raise LoracleError(
                f"learner memory: no memory-token network ships for {self.lm.name}; give one with "
                "-o checkpoint=RUN_FOLDER (train one: loracle train-hypernet --design prefix)"
            )
        return DocToPrefix.from_checkpoint(self.lm, shipped)

    def chunks_of(self, doc: Document) -> list[MemoryChunk]:
        """The document's chunks, each with its prefix (one forward pass each)."""
        tokenizer = self.lm.tokenizer
        pieces = chunk_ids(doc_ids(tokenizer, doc.text), self.engine.chunk_tokens)
        if not pieces:
            raise DocumentError(f"{doc.id}: empty document, nothing to learn")
        return [
            MemoryChunk(doc.id, doc.title, i, tokenizer.decode(ids), len(ids), self.engine.chunk_prefix(ids))
            for i, ids in enumerate(pieces)
        ]

    def learn(self, docs: Sequence[Document]) -> LearnReport:
        start = time.perf_counter()
        learned = [chunk for doc in docs for chunk in self.chunks_of(doc)]
        self.set_chunks(self.chunks + learned)
        size = sum(c.kv.numel() * 4 for c in learned)
        details = {"chunks": len(self.chunks), "top_k": self.config.top_k}
        return LearnReport(
            self.name, len(docs), sum(c.tokens for c in learned), time.perf_counter() - start, size, details
        )

    def answer(self, question: str) -> Answer:
        start = time.perf_counter()
        chosen = self.route(question)
        prefix = join_prefixes(self.lm.model, [c.kv for c in chosen])  # None: the base model answers alone
        config = GenerationConfig(max_new_tokens=self.config.max_new_tokens)
        text = generate_chat(self.lm, question_messages(question), config, prefix=prefix)
        return Answer(text, citations(chosen), time.perf_counter() - start)

    def save(self, path: Path) -> None:
        tensors = {f"c{i}": chunk.kv for i, chunk in enumerate(self.chunks)}
        meta = {"chunks": chunk_records(self.chunks)}
        save_checkpoint(path, self.name, self.lm.fingerprint, tensors, meta, self.config)

    def load(self, path: Path) -> None:
        tensors, meta = load_checkpoint(path, self.name, self.lm.fingerprint)
        config = stored_config(path, self.name, meta)
        try:
            chunks = [
                MemoryChunk(r["doc_id"], r["title"], r["index"], r["text"], r["tokens"], tensors[f"c{i}"])
                for i, r in enumerate(meta["chunks"])
            ]
        except (KeyError, TypeError) as exc:
            raise LoracleError(f"{path}: incomplete memory checkpoint ({exc})") from exc
        if config.checkpoint != self.config.checkpoint:
            self.engine = self._engine(config)  # type: ignore[arg-type]
        self.config = config  # type: ignore[assignment]
        self.set_chunks(chunks)

    def compile_document(self, doc: Document, folder: Path) -> CompileReport:
        """Write `doc` as one PEFT prefix adapter (float16): its chunks' prefixes one after another."""
        start = time.perf_counter()
        chunks = self.chunks_of(doc)
        prefix = join_prefixes(self.lm.model, [c.kv for c in chunks])
        assert prefix is not None  # chunks_of refuses an empty document
        manifest = {
            "learner": self.name,
            "config": self.config.model_dump(),
            "doc_id": doc.id,
            "doc_hash": doc.hash,
            "chunks": len(chunks),
            "routing_keys": sentence_keys(doc),
        }
        size = self.engine.export(prefix, folder, manifest, dtype=torch.float16)  # half the bytes; read back as is
        tokens = sum(c.tokens for c in chunks)
        details = {"chunks": len(chunks), "virtual_tokens": int(prefix.shape[3])}
        return CompileReport(doc.id, time.perf_counter() - start, tokens, size, details)
