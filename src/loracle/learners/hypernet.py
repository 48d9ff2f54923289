"""The `hypernet` learner: each document becomes LoRA adapters in one forward pass per chunk (Doc-to-LoRA).

learn() reads every chunk once through the base model and the hypernetwork; answer() routes the question
to the best-matching chunk adapters, applies them (plus the learned bias LoRA) and generates closed-book;
a question that no learned chunk covers (see routing.py) gets the base model alone, so general ability is
not touched by adapters about something else.
compile_document() writes a document's adapter as a plain PEFT folder for `loracle compile`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loracle.adapters.compiler import CompileReport
from loracle.adapters.peft_format import write_lora_adapter
from loracle.documents import Document
from loracle.errors import LoracleError
from loracle.hypernet.engine import DEFAULT_CHUNK_TOKENS, ChunkAdapter, DocText, DocToLora
from loracle.hypernet.lora import applied, from_flat, lora_bytes, lora_rank, to_flat, to_peft_tensors
from loracle.learners.base import Answer, Citation, LearnReport
from loracle.learners.checkpoint import load_checkpoint, save_checkpoint
from loracle.learners.routing import ChunkRouter
from loracle.model import GenerationConfig, LoadedModel, generate_chat, question_messages

NAME = "hypernet"


class HypernetLearner:
    name = NAME

    def __init__(
        self,
        lm: LoadedModel,
        *,
        checkpoint: Path | str | None = None,
        top_k: int = 2,
        min_coverage: float = 0.5,
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
        max_new_tokens: int = 48,
        batch: int = 1,
        engine: DocToLora | None = None,
    ) -> None:
        self.lm = lm
        self.engine = engine or DocToLora.from_checkpoint(
            lm, Path(checkpoint) if checkpoint else None, chunk_tokens=chunk_tokens
        )
        self.top_k = top_k
        self.min_coverage = min_coverage  # the same share ttt asks of a recitation before it reads it
        self.max_new_tokens = max_new_tokens
        self.batch = batch  # chunks per forward when learning several documents
        self.chunks: list[ChunkAdapter] = []
        self.router = ChunkRouter([])

    def learn(self, docs: Sequence[Document]) -> LearnReport:
        start = time.perf_counter()
        tokens = 0
        for adapters in self.engine.internalise_many([_doc_text(doc) for doc in docs], self.batch):
            self.chunks.extend(adapters)
            tokens += sum(a.tokens for a in adapters)
        self.router = ChunkRouter([c.text for c in self.chunks])
        size = sum(lora_bytes(c.lora) for c in self.chunks)
        details = {"chunks": len(self.chunks), "top_k": self.top_k}
        return LearnReport(NAME, len(docs), tokens, time.perf_counter() - start, size, details)

    def route(self, question: str) -> list[ChunkAdapter]:
        """The chunks that hold at least `min_coverage` of the question's words, best first, at most top_k."""
        return [self.chunks[i] for i in self.router.top(question, self.top_k, self.min_coverage)]

    def answer(self, question: str) -> Answer:
        start = time.perf_counter()
        chosen = self.route(question)
        # the adapters are forward hooks: every decoder runs hooked modules through their own forward;
        # about nothing learned, the base model answers alone, without even the bias LoRA
        config = GenerationConfig(max_new_tokens=self.max_new_tokens)
        with applied(self.lm.model, self.engine.combine(chosen)) if chosen else contextlib.nullcontext():
            text = generate_chat(self.lm, question_messages(question), config)
        citations = [Citation(c.doc_id, c.title, c.text[:160]) for c in chosen]
        return Answer(text, citations, time.perf_counter() - start)

    def reset(self) -> None:
        self.chunks = []
        self.router = ChunkRouter([])

    def save(self, path: Path) -> None:
        tensors = {}
        records = []
        for i, chunk in enumerate(self.chunks):
            tensors.update(to_flat(chunk.lora, f"c{i}"))
            records.append({"doc_id": chunk.doc_id, "title": chunk.title, "index": chunk.index, "text": chunk.text,
                            "tokens": chunk.tokens})  # fmt: skip
        save_checkpoint(path, NAME, self.lm.fingerprint, tensors, {"chunks": records, "top_k": self.top_k})

    def load(self, path: Path) -> None:
        tensors, meta = load_checkpoint(path, NAME, self.lm.fingerprint)
        try:
            self.chunks = [
                ChunkAdapter(r["doc_id"], r["title"], r["index"], r["text"], r["tokens"], from_flat(tensors, f"c{i}"))
                for i, r in enumerate(meta["chunks"])
            ]
        except (KeyError, TypeError) as exc:
            raise LoracleError(f"{path}: incomplete hypernet checkpoint ({exc})") from exc
        self.router = ChunkRouter([c.text for c in self.chunks])

    def compile_document(self, doc: Document, folder: Path) -> CompileReport:
        """Write `doc` as one PEFT adapter: the bias LoRA and every chunk's adapter, rank-concatenated."""
        return self.compile_documents([doc], [folder])[0]

    def compile_documents(self, docs: Sequence[Document], folders: Sequence[Path]) -> list[CompileReport]:
        """compile_document for several documents, their chunks read together (len(docs) chunks per forward).
        Each report carries the batch's seconds shared out by tokens."""
        start = time.perf_counter()
        batch = self.engine.internalise_many([_doc_text(doc) for doc in docs], batch=len(docs))
        written = [self._write(*job) for job in zip(docs, batch, folders, strict=True)]
        seconds = time.perf_counter() - start
        tokens = [sum(a.tokens for a in adapters) for adapters in batch]
        return [
            CompileReport(
                doc.id, seconds * n / sum(tokens), n, size, {"chunks": len(adapters), "rank": rank, "batch": len(docs)}
            )
            for doc, adapters, n, (size, rank) in zip(docs, batch, tokens, written, strict=True)
        ]

    def _write(self, doc: Document, adapters: Sequence[ChunkAdapter], folder: Path) -> tuple[int, int]:
        """The PEFT folder of one document's adapters; returns the bytes written and the adapter's rank."""
        lora = self.engine.combine(adapters)
        rank = lora_rank(lora)
        config = self.engine.net.config
        manifest: dict[str, Any] = {
            "learner": NAME,
            "doc_id": doc.id,
            "doc_hash": doc.hash,
            "base_fingerprint": self.lm.fingerprint,
            "chunks": len(adapters),
            "chunk_rank": config.rank,
            "bias_rank": config.bias_rank,
        }
        size = write_lora_adapter(
            folder,
            to_peft_tensors(lora),
            r=rank,
            alpha=rank,  # scaling alpha / r = 1: the generated B already carries the scale
            target_modules=sorted({t.rsplit(".", 1)[-1] for t in config.targets}),
            base_model=self.lm.name,
            manifest=manifest,
        )
        return size, rank


def _doc_text(doc: Document) -> DocText:
    return DocText(doc.text, doc.id, doc.title)


def compile_document(doc: Document, folder: Path, lm: LoadedModel, checkpoint: Path | None = None) -> CompileReport:
    """Compile one document into a PEFT adapter folder with the hypernetwork (shipped checkpoint by default)."""
    return HypernetLearner(lm, checkpoint=checkpoint).compile_document(doc, folder)
