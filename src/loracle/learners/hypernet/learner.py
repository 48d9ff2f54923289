"""The `hypernet` learner: each document becomes LoRA adapters in one forward pass per chunk (Doc-to-LoRA).

learn() reads every chunk once through the base model and the hypernetwork; answer() routes the question
to the best-matching chunk adapters, applies them (plus the network's bias LoRA) and generates closed-book;
a question that no learned chunk covers (see loracle.routing) gets the base model alone, so general ability is
not touched by adapters about something else. compile_document() writes a document's adapter as a plain
PEFT folder for `loracle compile`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from loracle.adapters.compiler import CompileReport
from loracle.documents import Document
from loracle.errors import LoracleError
from loracle.learners.base import Answer, LearnReport
from loracle.learners.checkpoint import load_checkpoint, save_checkpoint, stored_config
from loracle.learners.chunks import RoutedChunks, chunk_records, citations
from loracle.learners.hypernet.config import HypernetConfig
from loracle.learners.hypernet.engine import ChunkAdapter, DocText, DocToLora
from loracle.learners.lora import Lora, hooked, lora_rank, write_peft
from loracle.learners.ttt.learner import sentence_keys
from loracle.model import GenerationConfig, LoadedModel, generate_chat, question_messages


class HypernetLearner(RoutedChunks[ChunkAdapter]):
    name = "hypernet"

    def __init__(
        self, lm: LoadedModel, config: HypernetConfig | None = None, *, engine: DocToLora | None = None
    ) -> None:
        self.lm = lm
        self.config = config or HypernetConfig()
        self.engine = engine or self._engine(self.config)
        self.reset()

    def _engine(self, config: HypernetConfig) -> DocToLora:
        path = Path(config.checkpoint).expanduser() if config.checkpoint else None
        return DocToLora.from_checkpoint(self.lm, path, chunk_tokens=config.chunk_tokens)

    def learn(self, docs: Sequence[Document]) -> LearnReport:
        start = time.perf_counter()
        per_doc = self.engine.internalise_many([_doc_text(doc) for doc in docs], self.config.batch)
        learned = [adapter for adapters in per_doc for adapter in adapters]
        self.set_chunks(self.chunks + learned)
        tokens = sum(a.tokens for a in learned)
        size = sum(lora_bytes(c.lora) for c in self.chunks)
        details = {"chunks": len(self.chunks), "top_k": self.config.top_k}
        return LearnReport(self.name, len(docs), tokens, time.perf_counter() - start, size, details)

    def answer(self, question: str) -> Answer:
        start = time.perf_counter()
        chosen = self.route(question)
        # about nothing learned, the base model answers alone, without even the bias LoRA
        config = GenerationConfig(max_new_tokens=self.config.max_new_tokens)
        with hooked(self.lm.model, self.engine.combine(chosen)) if chosen else contextlib.nullcontext():
            text = generate_chat(self.lm, question_messages(question), config)
        return Answer(text, citations(chosen), time.perf_counter() - start)

    def save(self, path: Path) -> None:
        tensors = {}
        for i, chunk in enumerate(self.chunks):
            tensors.update(to_flat(chunk.lora, f"c{i}"))
        meta = {"chunks": chunk_records(self.chunks)}
        save_checkpoint(path, self.name, self.lm.fingerprint, tensors, meta, self.config)

    def load(self, path: Path) -> None:
        tensors, meta = load_checkpoint(path, self.name, self.lm.fingerprint)
        config = stored_config(path, self.name, meta)
        try:
            chunks = [
                ChunkAdapter(r["doc_id"], r["title"], r["index"], r["text"], r["tokens"], from_flat(tensors, f"c{i}"))
                for i, r in enumerate(meta["chunks"])
            ]
        except (KeyError, TypeError) as exc:
            raise LoracleError(f"{path}: incomplete hypernet checkpoint ({exc})") from exc
        if (config.checkpoint, config.chunk_tokens) != (self.config.checkpoint, self.config.chunk_tokens):
            self.engine = self._engine(config)  # the network whose bias LoRA the chunk adapters were written with
        self.config = config
        self.set_chunks(chunks)

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
        network = self.engine.net.config
        manifest: dict[str, Any] = {
            "learner": self.name,
            "config": self.config.model_dump(),
            "doc_id": doc.id,
            "doc_hash": doc.hash,
            "base_fingerprint": self.lm.fingerprint,
            "chunks": len(adapters),
            "chunk_rank": network.rank,
            "bias_rank": network.bias_rank,
            "routing_keys": sentence_keys(doc),
        }
        size = write_peft(folder, lora, scale=1.0, base_model=self.lm.name, manifest=manifest)
        return size, lora_rank(lora)


def _doc_text(doc: Document) -> DocText:
    return DocText(doc.text, doc.id, doc.title)


def lora_bytes(lora: Lora, bytes_per_value: int = 4) -> int:
    """What a chunk adapter takes in a checkpoint."""
    return sum((a.numel() + b.numel()) * bytes_per_value for a, b in lora.values())


def to_flat(lora: Lora, prefix: str) -> dict[str, torch.Tensor]:
    """Flat tensors for a safetensors file: <prefix>/<path>/A and /B."""
    flat: dict[str, torch.Tensor] = {}
    for path, (a, b) in lora.items():
        flat[f"{prefix}/{path}/A"] = a.detach()
        flat[f"{prefix}/{path}/B"] = b.detach()
    return flat


def from_flat(tensors: dict[str, torch.Tensor], prefix: str) -> Lora:
    paths = sorted({k[len(prefix) + 1 : -2] for k in tensors if k.startswith(prefix + "/")})
    return {p: (tensors[f"{prefix}/{p}/A"], tensors[f"{prefix}/{p}/B"]) for p in paths}
