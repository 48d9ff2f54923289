"""The `context` learner: retrieve the chunks that best match the question and put them in the prompt.

Learning is indexing (chunk every document, BM25 over the chunks); answering is retrieval-augmented
generation with citations (document id and line range of each chunk used). An optional logit bias
nudges generation toward tokens that occur in the retrieved chunks, so short answers copy names
and numbers from the text instead of inventing them.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from loracle.documents import Document
from loracle.learners.base import Answer, Citation, LearnReport
from loracle.learners.checkpoint import load_checkpoint, save_checkpoint
from loracle.model import GenerationConfig, LoadedModel, generate_chat, question_messages

_WORD_RE = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Chunk:
    """A run of whole lines of one document (lines are 1-based, inclusive)."""

    doc_id: str
    title: str
    text: str
    start_line: int
    end_line: int


def chunk_lines(doc: Document, max_words: int = 120) -> list[Chunk]:
    """Split a document into chunks of whole lines, breaking at blank lines once a chunk is big enough."""
    chunks: list[Chunk] = []
    lines = doc.text.splitlines()
    start, words, buffer = 1, 0, []
    for number, line in enumerate(lines, start=1):
        if not buffer and not line.strip():
            start = number + 1
            continue
        buffer.append(line)
        words += len(line.split())
        at_break = not line.strip() or number == len(lines)
        if words >= max_words or (at_break and words >= max_words // 2):
            chunks.append(Chunk(doc.id, doc.title, "\n".join(buffer).strip(), start, number))
            start, words, buffer = number + 1, 0, []
    if buffer and "".join(buffer).strip():
        chunks.append(Chunk(doc.id, doc.title, "\n".join(buffer).strip(), start, len(lines)))
    return chunks


def _terms(text: str) -> list[str]:
    return [w.lower() for w in _WORD_RE.findall(text)]


class BM25:
    """Okapi BM25 over a list of texts, held in memory (k1=1.5, b=0.75)."""

    def __init__(self, texts: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.docs = [Counter(_terms(t)) for t in texts]
        self.lengths = [sum(c.values()) for c in self.docs]
        self.avg_len = sum(self.lengths) / len(self.lengths) if self.lengths else 0.0
        frequency: Counter[str] = Counter()
        for counts in self.docs:
            frequency.update(counts.keys())
        n = len(self.docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in frequency.items()}

    def scores(self, query: str) -> list[float]:
        terms = set(_terms(query))
        out = []
        for counts, length in zip(self.docs, self.lengths, strict=True):
            score = 0.0
            for term in terms:
                tf = counts.get(term, 0)
                if tf:
                    norm = tf + self.k1 * (1 - self.b + self.b * length / (self.avg_len or 1.0))
                    score += self.idf[term] * tf * (self.k1 + 1) / norm
            out.append(score)
        return out


class ContextLearner:
    """Retrieval + in-context answering; see the module docstring."""

    name = "context"

    def __init__(
        self,
        lm: LoadedModel,
        *,
        top_k: int = 3,
        context_tokens: int = 900,
        chunk_words: int = 120,
        logit_bias: float = 0.0,
        max_new_tokens: int = 64,
    ) -> None:
        self.lm = lm
        self.top_k = top_k
        self.context_tokens = context_tokens
        self.chunk_words = chunk_words
        self.logit_bias = logit_bias
        self.max_new_tokens = max_new_tokens
        self.reset()

    def reset(self) -> None:
        self.chunks: list[Chunk] = []
        self._index = BM25([])

    def learn(self, docs: Sequence[Document]) -> LearnReport:
        start = time.perf_counter()
        known = {d.id for d in docs}
        kept = [c for c in self.chunks if c.doc_id not in known]  # re-learning a document replaces it
        new = [c for d in docs for c in chunk_lines(d, self.chunk_words)]
        self.chunks = kept + new
        self._index = BM25([f"{c.title}\n{c.text}" for c in self.chunks])
        tokens = sum(len(self.lm.tokenizer.encode(d.text)) for d in docs)
        return LearnReport(
            self.name,
            len(docs),
            tokens,
            time.perf_counter() - start,
            bytes_on_disk=sum(len(c.text.encode("utf-8")) for c in self.chunks),
            details={"chunks": len(self.chunks)},
        )

    def retrieve(self, question: str) -> list[Chunk]:
        """The best chunks for `question` that fit the context budget, in document order."""
        if not self.chunks:
            return []
        scores = self._index.scores(question)
        ranked = sorted(range(len(self.chunks)), key=lambda i: -scores[i])
        chosen: list[int] = []
        used = 0
        for i in ranked[: self.top_k]:
            if scores[i] <= 0 and chosen:
                break
            size = len(self.lm.tokenizer.encode(self.chunks[i].text))
            if chosen and used + size > self.context_tokens:
                continue
            chosen.append(i)
            used += size
        return [self.chunks[i] for i in sorted(chosen)]

    def answer(self, question: str) -> Answer:
        start = time.perf_counter()
        chunks = self.retrieve(question)
        context = "\n\n".join(c.text for c in chunks) if chunks else None
        config = GenerationConfig(max_new_tokens=self.max_new_tokens, logit_bias=self._bias(chunks))
        text = generate_chat(self.lm, question_messages(question, context), config)
        citations = [Citation(c.doc_id, c.title, snippet=c.text[:200], line=c.start_line) for c in chunks]
        return Answer(text, citations, time.perf_counter() - start)

    def _bias(self, chunks: Sequence[Chunk]) -> dict[int, float]:
        if self.logit_bias == 0 or not chunks:
            return {}
        ids = {t for c in chunks for t in self.lm.tokenizer.encode(c.text, add_special_tokens=False)}
        return dict.fromkeys(ids, self.logit_bias)

    def save(self, path: Path) -> None:
        meta = {
            "options": {
                "top_k": self.top_k,
                "context_tokens": self.context_tokens,
                "chunk_words": self.chunk_words,
                "logit_bias": self.logit_bias,
                "max_new_tokens": self.max_new_tokens,
            },
            "chunks": [asdict(c) for c in self.chunks],
        }
        save_checkpoint(path, self.name, self.lm.fingerprint, {}, meta)

    def load(self, path: Path) -> None:
        _, meta = load_checkpoint(path, self.name, self.lm.fingerprint)
        for key, value in meta.get("options", {}).items():
            if hasattr(self, key):
                setattr(self, key, value)
        self.chunks = [Chunk(**c) for c in meta.get("chunks", [])]
        self._index = BM25([f"{c.title}\n{c.text}" for c in self.chunks])
