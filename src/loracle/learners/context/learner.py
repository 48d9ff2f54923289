"""The `context` learner: retrieve the learned chunks that answer the question and put them in the prompt.

Learning is indexing: documents are cut into chunks (sources.chunking) in an in-memory hybrid index (BM25 +
MiniLM vectors, fused). Answering is retrieval-augmented generation with citations (document and lines).

A 135M model is easily distracted, so the prompt holds as little as answers the question: one passage per
question the message asks (`question_parts`, cut after each "?"), in document order. A question unlike
anything learned gets no passage and the base model's own answer, which keeps general ability intact: the
gate is the best cosine of the question to a sentence of the best hits, each read after its document's title
(a short question is about a sentence; against a whole chunk its similarity is diluted). A logit bias toward
the passages' tokens, each spent once used, makes the reply copy the fact rather than answer from memory;
a message long enough to carry a passage of its own is biased toward too, so a pasted passage is not
outweighed by a learned one. How each default was chosen, and the options that lost: docs/experiments/context.md.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from loracle.documents import Document
from loracle.learners.base import Answer, Citation, LearnReport
from loracle.learners.checkpoint import load_checkpoint, save_checkpoint, stored_config
from loracle.learners.context.config import ContextConfig
from loracle.model import GenerationConfig, LoadedModel, generate_chat, question_messages
from loracle.model.chat import stop_token_ids
from loracle.search import Embedder, SearchIndex, default_embedder
from loracle.search.embedder import MINILM_NAME
from loracle.search.text import query_terms
from loracle.search.types import ChunkHit, IndexedPage
from loracle.sources.chunking import Chunk, chunk_document
from loracle.sources.sentences import split_sentences, without_headings

IN_MEMORY = Path(":memory:")
#: the gate score (`ContextLearner.gate_score`) below which nothing is retrieved, for all-MiniLM-L6-v2
MINILM_MIN_SIMILARITY = 0.489
#: how many of the best hits the gate reads, whatever `top_k` puts in the prompt
GATE_HITS = 3
#: where a message holding several questions is cut into them (`question_parts`)
_AFTER_QUESTION_MARK = re.compile(r"(?<=\?)\s+")


def passage_bias(lm: LoadedModel, passages: Sequence[str], strength: float) -> dict[int, float]:
    """A logit bias of `strength` toward every token of `passages` and toward ending the turn ({} at 0 or
    with no passages); ending the turn is favoured too, so that the bias does not push a reply to run on."""
    if strength == 0 or not passages:
        return {}
    ids = {t for text in passages for t in lm.tokenizer.encode(text, add_special_tokens=False)}
    return dict.fromkeys(ids | stop_token_ids(lm.tokenizer), strength)


def passage_generation(
    lm: LoadedModel, passages: Sequence[str], strength: float, max_new_tokens: int
) -> GenerationConfig:
    """How the context learner decodes a reply over `passages`: with `passage_bias`, each token's bias spent
    once the reply has used it (a constant bias can lock greedy decoding into a loop of favoured tokens)."""
    return GenerationConfig(
        max_new_tokens=max_new_tokens, logit_bias=passage_bias(lm, passages, strength), bias_once=True
    )


def question_parts(question: str) -> list[str]:
    """The questions a message asks, cut after each question mark ("Who founded X? And when was Y built?"
    asks two); parts with no search word of two letters or more are dropped, and a message with none of its
    own stays whole. One question about two things ("Who founded X and who runs Y?") stays one: cutting at
    "and who" would also cut single questions ("between Koblenz and what?")."""
    parts = [
        part for part in _AFTER_QUESTION_MARK.split(question.strip()) if any(len(t) > 1 for t in query_terms(part))
    ]
    return parts or [question]


class RememberingEmbedder:
    """Wraps an embedder and keeps every vector it made, so a saved learner reloads without re-embedding."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.vectors: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, self.inner.encode(missing), strict=True))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.vectors[t] for t in texts]).astype(np.float32)


class ContextLearner:
    """Retrieval + in-context answering; see the module docstring."""

    name = "context"

    def __init__(
        self, lm: LoadedModel, config: ContextConfig | None = None, *, embedder: Embedder | None = None
    ) -> None:
        self.lm = lm
        self._given_embedder = embedder
        self._embedder: RememberingEmbedder | None = None
        self.chunks: dict[str, Chunk] = {}
        self._configure(config or ContextConfig())

    def _configure(self, config: ContextConfig) -> None:
        """Take `config`: the embedder it needs, its gate, and an empty index."""
        self.config = config
        if not config.vectors:
            self._embedder = None
        elif self._embedder is None:
            self._embedder = RememberingEmbedder(self._given_embedder or default_embedder())
        self.min_similarity = self._default_gate() if config.min_similarity is None else config.min_similarity
        self.index = SearchIndex(IN_MEMORY, self._embedder, vectors=config.vectors)
        self.chunks = {}

    def _default_gate(self) -> float:
        """The similarity gate picked for the default embedder; none (-1) for another, whose scale is unknown."""
        if self._embedder is not None and self._embedder.name == MINILM_NAME:
            return MINILM_MIN_SIMILARITY
        return -1.0

    def reset(self) -> None:
        self.index.close()
        self._configure(self.config)

    def learn(self, docs: Sequence[Document]) -> LearnReport:
        start = time.perf_counter()
        new = [c for d in docs for c in chunk_document(d, self.config.chunk_tokens)]
        for doc in docs:  # re-learning a document replaces its chunks
            self.index.remove_chunks(doc.id)
            self.chunks = {k: c for k, c in self.chunks.items() if c.doc_id != doc.id}
        self.index.upsert_chunks(new)
        self.chunks.update((c.id, c) for c in new)
        tokens = sum(len(self.lm.tokenizer.encode(d.text)) for d in docs)
        return LearnReport(
            self.name,
            len(docs),
            tokens,
            time.perf_counter() - start,
            bytes_on_disk=self._size(),
            details={"chunks": len(self.chunks)},
        )

    def _size(self) -> int:
        text = sum(len(c.text.encode("utf-8")) for c in self.chunks.values())
        return text + (len(self.chunks) * self._embedder.dim * 4 if self._embedder else 0)

    def retrieve(self, question: str) -> list[ChunkHit]:
        """The chunks that go into the prompt for `question`, laid out in `order`; [] when nothing matches."""
        if not self.chunks:
            return []
        hits = self.index.search_chunks(question, n=max(self.config.top_k, GATE_HITS), mode="hybrid")
        if not hits or not self.relevant(question, hits[:GATE_HITS]):
            return []
        chosen = self._one_per_part(question, hits[0]) if self.config.split_questions else self._fitting(hits)
        if self.config.order == "document":
            return sorted(chosen, key=lambda h: (h.doc_id, h.start_line))
        return chosen[::-1]

    def _fitting(self, hits: Sequence[ChunkHit]) -> list[ChunkHit]:
        """Of the best `top_k` hits, those that fit in `context_tokens`, best first."""
        chosen: list[ChunkHit] = []
        for hit in hits[: self.config.top_k]:
            if self._fits(chosen, hit):
                chosen.append(hit)
        return chosen

    def _one_per_part(self, question: str, best: ChunkHit) -> list[ChunkHit]:
        """The best hit of each question the message asks (`question_parts`), up to `top_k` different ones; a
        message that asks one question gets the one hit that answers it."""
        parts = question_parts(question)
        chosen: list[ChunkHit] = []
        for part in parts[: self.config.top_k]:
            found = [best] if len(parts) == 1 else self.index.search_chunks(part, n=1, mode="hybrid")
            for hit in found:
                if hit.id not in {c.id for c in chosen} and self._fits(chosen, hit):
                    chosen.append(hit)
        return chosen

    def _fits(self, chosen: Sequence[ChunkHit], hit: ChunkHit) -> bool:
        """Whether `hit` still fits in `context_tokens` beside `chosen` (the first hit always does)."""
        used = sum(len(self.lm.tokenizer.encode(c.text)) for c in chosen)
        return not chosen or used + len(self.lm.tokenizer.encode(hit.text)) <= self.config.context_tokens

    def relevant(self, question: str, hits: Sequence[ChunkHit]) -> bool:
        """Whether the best hits say something close enough to the question to be worth reading (always,
        without vectors)."""
        if self._embedder is None or self.min_similarity <= -1:
            return True
        return self.gate_score(question, hits) >= self.min_similarity

    def gate_score(self, question: str, hits: Sequence[ChunkHit]) -> float:
        """The highest cosine similarity of the question to a sentence of `hits`, each read after its document's
        title (a hit with no sentence counts whole); -1 for no hits."""
        assert self._embedder is not None
        texts = [f"{h.title}: {s}" for h in hits for s in (split_sentences(without_headings(h.text), 1) or [h.text])]
        if not texts:
            return -1.0
        vectors = self._embedder.encode([question, *texts])
        norms = np.maximum(np.linalg.norm(vectors, axis=1), 1e-9)
        return float(((vectors[1:] @ vectors[0]) / (norms[1:] * norms[0])).max())

    def answer(self, question: str) -> Answer:
        start = time.perf_counter()
        hits = self.retrieve(question)
        text = self.reply(question, [h.text for h in hits])
        citations = [
            Citation(h.doc_id, h.title, snippet=f"lines {h.start_line}-{h.end_line}: {h.text[:160]}", line=h.start_line)
            for h in hits
        ]
        return Answer(text, citations, time.perf_counter() - start)

    def reply(self, question: str, passages: Sequence[str]) -> str:
        """The reply to `question` with `passages` in context, decoded as `answer` decodes it (closed-book and
        unbiased with none)."""
        config = passage_generation(
            self.lm, self.biased_texts(question, passages), self.config.logit_bias, self.config.max_new_tokens
        )
        return generate_chat(self.lm, question_messages(question, "\n\n".join(passages) or None), config)

    def biased_texts(self, question: str, passages: Sequence[str]) -> list[str]:
        """The texts whose tokens the reply is biased toward: the passages in context and, when it is at least
        `own_passage_tokens` long (None: never), the user's message, whose pasted passage should weigh as much
        as a retrieved one."""
        if not passages:
            return []
        limit = self.config.own_passage_tokens
        own = limit is not None and len(self.lm.tokenizer.encode(question, add_special_tokens=False)) >= limit
        return [*passages, *([question] if own else [])]

    def save(self, path: Path) -> None:
        chunks = list(self.chunks.values())
        tensors: dict[str, torch.Tensor] = {}
        if self._embedder is not None and chunks:
            tensors["embeddings"] = torch.from_numpy(self._embedder.encode([_embed_text(c) for c in chunks]))
        meta = {"chunks": [asdict(c) for c in chunks]}
        save_checkpoint(path, self.name, self.lm.fingerprint, tensors, meta, self.config)

    def load(self, path: Path) -> None:
        tensors, meta = load_checkpoint(path, self.name, self.lm.fingerprint)
        config = stored_config(path, self.name, meta)
        chunks = [Chunk(**c) for c in meta.get("chunks", [])]
        self.index.close()
        self._configure(config)
        if self._embedder is not None and "embeddings" in tensors and len(tensors["embeddings"]) == len(chunks):
            texts = [_embed_text(c) for c in chunks]
            self._embedder.vectors.update(zip(texts, tensors["embeddings"].numpy(), strict=True))
        self.index.upsert_chunks(chunks)
        self.chunks = {c.id: c for c in chunks}


def _embed_text(chunk: Chunk) -> str:
    """The text the index embeds for `chunk` (what a checkpoint keeps the vector of)."""
    return IndexedPage(id=chunk.id, title=chunk.title, body=chunk.text).embed_text()
