"""The `context` learner: retrieve the chunks that best match the question and put them in the prompt.

Learning is indexing: every document is cut into chunks (sources.chunking) and put in an in-memory
hybrid search index (search.SearchIndex: BM25 + MiniLM vectors, fused). Answering is retrieval-augmented
generation with citations (document id and line span of each chunk used).

A small model is easily distracted, so the prompt holds as little as answers the question. By default
(`split_questions`) a message gets one hit per question it asks (`question_parts`: cut after each question
mark), each that question's best, up to `top_k`: "Who founded X?" gets one passage, "Who founded X? And where
is Y?" one for each. One question about two things ("Who founded X and who runs Y?") gets one: cutting at
"and who/what" would also cut single questions ("between Koblenz and what?", 7 of 220 SQuAD dev questions).
Otherwise, after the best hit, a further hit is kept only if its fused score is at least `min_relative_score`
of the best one's, and with `require_new_terms` only if it also holds a word of the question that no hit kept
before it holds (a word as the full-text index matches it, stemmed, and of two letters or more): a question
about one paragraph then gets that paragraph alone, and one that asks about two things gets a hit for each.
The hits are laid out in document order (`order`). A question that matches nothing learned gets no context
at all: the base model answers it as if nothing had been learned, which is what keeps general ability intact.
"Matches" is judged sentence by sentence (`gate_score`): the best cosine similarity of the question to any
sentence of the best `GATE_HITS` hits must reach `min_similarity`. A short question is about a sentence or
two; against a whole 200-token chunk its similarity is diluted by everything else the chunk says. Each
sentence is read after its document's title, which says what its "it" or "the station" is: alone,
"The station is powered by a small hydroelectric plant on the Corra River." is further from "Which river
powers the observatory?" than a sentence about the telescope is. On SQuAD dev paragraphs the whole-chunk
gate shut out 8 of 48 questions, 5 of them with their own paragraph as the best hit, and 20 were answered
right; at the same share of unrelated questions let through (a quarter, on generated dev documents), this
gate shuts out 4 and 21 are right (22 with no gate, 23 with the paragraph in context).
A logit bias (`passage_bias`) nudges generation toward the tokens of the retrieved chunks: a 135M model
given a passage often answers from its own memory or in its own words, and the bias makes it copy the fact.
A token's bias is spent once the reply has used it (`GenerationConfig.bias_once`); a constant bias can lock
greedy decoding into a loop of favoured tokens.
Defaults were picked on dev data only, never on an evaluation set: the gate and the retrieval settings that
tie best on generated documents (benchmarks/context_dev.py, whose questions include some that need two
documents), and among those the one best on SQuAD dev paragraphs (benchmarks/context_squad_dev.py): up to 3
hits in document order. Those were chosen with no bias; the bias was then picked over both dev sets
(benchmarks/context_bias_dev.py): 2.0, 56 of 120 right against 43 with none (SQuAD dev 41/80 against 25,
generated documents 15/40 against 18). Spending each token's bias once, the same bias gets 59 of 120
(SQuAD dev 39, generated 20; benchmarks/results/context_bias_dev_once.json). Chosen again with that bias,
spent once, and at the learner's reply length, the two dev scripts keep the same settings and gate (generated
dev 20 of 40, as many as its ceiling with the same bias; SQuAD dev 22 of 48 against 28). With
`require_new_terms` added to their grid they chose it, with up to 2 hits at any score (generated dev 21 of 40,
one more). On the learners benchmark's evaluation sets that measured below the old defaults on every corpus,
and it was kept: undoing it for that reason would tune to evaluation data. The protocol was revisited instead
(that it needed it was seen on evaluation results; the new rule reads dev data only, and was fixed before its
run): every grid setting is scored on generated dev and 78 SQuAD dev questions pooled, and a default changes
only when the best setting beats it by a one-sided sign test at p < 0.05. One hit alone is best pooled (62 of
118 against 57), right 6 times where the defaults are wrong and the reverse once: p = 0.062, so the defaults
stay. `lexical_gate` (also let through a question one of whose best hits holds every word of it) was scored
the same way: 3 more right, none fewer, p = 0.125, so it is off (benchmarks/context_gate_dev.py). On 106
fresh dev questions (benchmarks/context_confirm.py) neither holds up: one hit gains 1 and loses none (52
against 51, ceiling 57), and lexical_gate changes no outcome.
`split_questions` came later, from two looks at dev data: through the evaluation harness's own protocol the
learner reached 93 of the ceiling's 101 on all 220 SQuAD dev questions, and there the defaults' second hit
(a neighbouring paragraph sharing a word with the question) cost 10 answers and gained 2. Its rule, fixed
before its run (benchmarks/context_split_dev.py): on those questions and generated dev pooled it is right 11
times where `require_new_terms` is wrong and the reverse twice (p = 0.011; 107 against 99 of 220 SQuAD dev,
22 against 21 of 40 generated), and on 58 fresh questions no script had read it changes no outcome (17 of 40
generated, 6 of 18 SQuAD, either way), so it is on. The pooled questions are not independent of the idea,
which is why the fresh ones had to show it no worse.
`rerank` (off) reorders the best `rerank` hits by how likely the model finds the question after each
(learners.question_likelihood), and `min_question_gain` (off; needs `rerank`) lets a question the similarity
gate shuts out through when its best hit makes it that much likelier, in nats per token, than no passage does.
Measured by a rule fixed before the run (benchmarks/context_rerank_dev.py), with 5 hits and a gain of 3.06
(above every unrelated generated dev question the gate shuts out): the own SQuAD dev paragraph comes first
for 186 of 220 questions against 179, but answers barely move (111 against 107 of 220 SQuAD dev, 22 either
way of 40 generated dev: right 11 times where the defaults are wrong, the reverse 7, p = 0.24; fresh
generated 21 against 20 of 40), and retrieval takes 1.2-1.8 s more per question; so both stay off.
The bias has a cost when the user pastes a passage into the question and retrieval adds a learned chunk
beside it: the reply is pulled toward the learned chunk. On SQuAD dev paragraphs read next to learned
neighbours (benchmarks/context_reading_dev.py) the learner gets 15 of 40 right where the base model gets 22.
Biasing toward the user's message as well gets 22, but biasing toward every question's own words costs
closed-book questions (52 of 120 against 59 on context_bias_dev's sets). So the message is biased toward
only when it carries a passage of its own: at least `own_passage_tokens` tokens (64; the longest closed-book
dev question has 26, the shortest dev reading prompt 88), which leaves closed-book questions as they were.
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
from loracle.learners.checkpoint import load_checkpoint, save_checkpoint
from loracle.learners.question_likelihood import question_logprobs
from loracle.learners.selfstudy import sentences
from loracle.model import GenerationConfig, LoadedModel, generate_chat, question_messages
from loracle.model.chat import stop_token_ids
from loracle.search import Embedder, SearchIndex, default_embedder
from loracle.search.embedder import MINILM_NAME
from loracle.search.text import query_terms
from loracle.search.types import ChunkHit, IndexedPage
from loracle.sources.chunking import Chunk, chunk_document

IN_MEMORY = Path(":memory:")
#: the gate score (`ContextLearner.gate_score`) below which nothing is retrieved, for all-MiniLM-L6-v2
MINILM_MIN_SIMILARITY = 0.489
#: how many of the best hits the gate reads, whatever `top_k` puts in the prompt
GATE_HITS = 3
#: the fewest search terms a question needs for `lexical_gate` to let it through on its words alone
LEXICAL_GATE_TERMS = 2
#: a user's message this many tokens long or longer carries a passage of its own (`ContextLearner.biased_texts`)
OWN_PASSAGE_TOKENS = 64
#: how retrieved chunks are laid out: most relevant last (nearest the question), or in document order
ORDERS = ("relevance", "document")
#: where a message holding several questions is cut into them (`question_parts`)
_AFTER_QUESTION_MARK = re.compile(r"(?<=\?)\s+")


def passage_bias(lm: LoadedModel, passages: Sequence[str], strength: float) -> dict[int, float]:
    """A logit bias of `strength` toward every token of `passages` and toward ending the turn ({} at 0 or
    with no passages).

    Ending the turn is favoured too, so that the bias does not push a reply to run on.
    """
    if strength == 0 or not passages:
        return {}
    ids = {t for text in passages for t in lm.tokenizer.encode(text, add_special_tokens=False)}
    return dict.fromkeys(ids | stop_token_ids(lm.tokenizer), strength)


def passage_generation(
    lm: LoadedModel, passages: Sequence[str], strength: float, max_new_tokens: int
) -> GenerationConfig:
    """How the context learner decodes a reply over `passages`: with `passage_bias`, each token's bias spent
    once the reply has used it."""
    return GenerationConfig(
        max_new_tokens=max_new_tokens, logit_bias=passage_bias(lm, passages, strength), bias_once=True
    )


def question_words(question: str) -> list[str]:
    """The search terms of `question` that say what it is about: one-letter ones (the "s" of "Robert's") are
    left out, or a chunk would count as holding a word of the question for any possessive in it."""
    return [term for term in query_terms(question) if len(term) > 1]


def question_parts(question: str) -> list[str]:
    """The questions a message asks, cut after each question mark ("Who founded X? And when was Y built?"
    asks two); parts with no search word are dropped, and a message with none of its own stays whole."""
    parts = [part for part in _AFTER_QUESTION_MARK.split(question.strip()) if question_words(part)]
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
        self,
        lm: LoadedModel,
        *,
        top_k: int = 2,
        context_tokens: int = 900,
        chunk_tokens: int = 200,
        min_relative_score: float = 0.0,
        require_new_terms: bool = True,
        split_questions: bool = True,
        rerank: int = 0,
        min_similarity: float | None = None,
        min_question_gain: float | None = None,
        lexical_gate: bool = False,
        order: str = "document",
        logit_bias: float = 2.0,
        own_passage_tokens: int | None = OWN_PASSAGE_TOKENS,
        max_new_tokens: int = 64,
        vectors: bool = True,
        embedder: Embedder | None = None,
    ) -> None:
        self.lm = lm
        self.top_k = top_k
        self.context_tokens = context_tokens
        self.chunk_tokens = chunk_tokens
        self.min_relative_score = min_relative_score
        self.require_new_terms = require_new_terms
        self.split_questions = split_questions
        if min_question_gain is not None and rerank < 1:
            raise ValueError("context learner: min_question_gain needs rerank >= 1 (the likelihoods it compares)")
        self.rerank = rerank
        if order not in ORDERS:
            raise ValueError(f"context learner: order must be one of {', '.join(ORDERS)}, not {order!r}")
        self.order = order
        self.logit_bias = logit_bias
        self.own_passage_tokens = own_passage_tokens
        self.max_new_tokens = max_new_tokens
        self.vectors = vectors
        self._embedder = RememberingEmbedder(embedder or default_embedder()) if vectors else None
        self.min_similarity = self._default_gate() if min_similarity is None else min_similarity
        self.min_question_gain = min_question_gain
        self.lexical_gate = lexical_gate
        self.chunks: dict[str, Chunk] = {}
        self.index = self._new_index()

    def _default_gate(self) -> float:
        """The similarity gate picked for the default embedder; none (-1) for another, whose scale is unknown."""
        if self._embedder is not None and self._embedder.name == MINILM_NAME:
            return MINILM_MIN_SIMILARITY
        return -1.0

    def _new_index(self) -> SearchIndex:
        return SearchIndex(IN_MEMORY, self._embedder, vectors=self.vectors)

    def reset(self) -> None:
        self.index.close()
        self.chunks = {}
        self.index = self._new_index()

    def learn(self, docs: Sequence[Document]) -> LearnReport:
        start = time.perf_counter()
        new = [c for d in docs for c in chunk_document(d, self.chunk_tokens)]
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
        hits = self.index.search_chunks(question, n=max(self.top_k, GATE_HITS, self.rerank), mode="hybrid")
        if not hits:
            return []
        similar = self.relevant(question, hits[:GATE_HITS])
        if not similar and self.min_question_gain is None:
            return []
        ranked, likelihoods = self.reranked(question, hits)
        if not similar and not self._raises_question(question, likelihoods):
            return []
        chosen = self._one_per_part(question, ranked[0]) if self.split_questions else self._covering(question, ranked)
        if self.order == "document":
            return sorted(chosen, key=lambda h: (h.doc_id, h.start_line))
        return chosen[::-1]

    def reranked(self, question: str, hits: Sequence[ChunkHit]) -> tuple[list[ChunkHit], list[float]]:
        """`hits` with the first `rerank` of them reordered by how likely the model finds `question` after each
        (`question_logprobs`), most likely first, and those likelihoods; unchanged and [] with `rerank` off."""
        if self.rerank < 1:
            return list(hits), []
        head = hits[: self.rerank]
        likelihoods = question_logprobs(self.lm, question, [f"{h.title}\n{h.text}" for h in head])
        order = sorted(range(len(head)), key=lambda i: -likelihoods[i])
        return [head[i] for i in order] + list(hits[self.rerank :]), [likelihoods[i] for i in order]

    def _raises_question(self, question: str, likelihoods: Sequence[float]) -> bool:
        """Whether the most likely hit (`likelihoods`, best first) makes `question` more likely than no passage
        does by at least `min_question_gain` (log-probability per token); never with the option off."""
        if self.min_question_gain is None or not likelihoods:
            return False
        return self.question_gain(question, likelihoods) >= self.min_question_gain

    def question_gain(self, question: str, likelihoods: Sequence[float]) -> float:
        """How much likelier (log-probability per token) the most likely hit (`likelihoods`, best first, as
        `reranked` gives them) makes `question` than no passage does."""
        return likelihoods[0] - question_logprobs(self.lm, question, [None])[0]

    def _covering(self, question: str, hits: Sequence[ChunkHit]) -> list[ChunkHit]:
        """The best hit, then up to `top_k` - 1 further ones by `min_relative_score` and `require_new_terms`."""
        candidates = hits[: self.top_k]
        terms = question_words(question) if self.require_new_terms else []  # no index lookups when the rule is off
        held = self.index.chunk_terms([h.id for h in candidates], terms)
        chosen: list[ChunkHit] = []
        covered: set[str] = set()
        for hit in candidates:
            if chosen and hit.score < self.min_relative_score * hits[0].score:
                break
            if chosen and self.require_new_terms and not held[hit.id] - covered:
                continue
            if self._fits(chosen, hit):
                chosen.append(hit)
                covered |= held[hit.id]
        return chosen

    def _one_per_part(self, question: str, best: ChunkHit) -> list[ChunkHit]:
        """With `split_questions`: the best hit of each question the message asks (`question_parts`), up to
        `top_k` different ones; a message that asks one question gets the one hit that answers it."""
        parts = question_parts(question)
        chosen: list[ChunkHit] = []
        for part in parts[: self.top_k]:
            found = [best] if len(parts) == 1 else self._best_hit(part)
            for hit in found:
                if hit.id not in {c.id for c in chosen} and self._fits(chosen, hit):
                    chosen.append(hit)
        return chosen

    def _best_hit(self, question: str) -> list[ChunkHit]:
        """The one best hit for `question` (reranked with `rerank`), or none."""
        hits = self.index.search_chunks(question, n=max(1, self.rerank), mode="hybrid")
        return self.reranked(question, hits)[0][:1]

    def _fits(self, chosen: Sequence[ChunkHit], hit: ChunkHit) -> bool:
        """Whether `hit` still fits in `context_tokens` beside `chosen` (the first hit always does)."""
        used = sum(len(self.lm.tokenizer.encode(c.text)) for c in chosen)
        return not chosen or used + len(self.lm.tokenizer.encode(hit.text)) <= self.context_tokens

    def relevant(self, question: str, hits: Sequence[ChunkHit]) -> bool:
        """Whether the best hits say something close enough to the question to be worth reading (always,
        without vectors)."""
        if self._embedder is None or self.min_similarity <= -1:
            return True
        if self.gate_score(question, hits) >= self.min_similarity:
            return True
        return self.lexical_gate and self.holds_every_term(question, hits)

    def holds_every_term(self, question: str, hits: Sequence[ChunkHit]) -> bool:
        """Whether one of `hits` holds every search term of `question` (stemmed, as the index matches words),
        which must have at least LEXICAL_GATE_TERMS of them (`question_words`): a question asked in a document's
        own words. A short one ("Who was Margaret's husband?") can be far from every sentence by the similarity
        gate's measure."""
        terms = question_words(question)
        if len(terms) < LEXICAL_GATE_TERMS or not hits:
            return False
        held = self.index.chunk_terms([h.id for h in hits], terms)
        return any(held[h.id] >= set(terms) for h in hits)

    def gate_score(self, question: str, hits: Sequence[ChunkHit]) -> float:
        """The highest cosine similarity of the question to a sentence of `hits`, each read after its document's
        title (a hit with no sentence counts whole); -1 for no hits."""
        assert self._embedder is not None
        texts = [f"{h.title}: {s}" for h in hits for s in (sentences(h.text, min_words=1) or [h.text])]
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
        unbiased with none); the dev benchmarks score settings through it."""
        config = passage_generation(
            self.lm, self.biased_texts(question, passages), self.logit_bias, self.max_new_tokens
        )
        return generate_chat(self.lm, question_messages(question, "\n\n".join(passages) or None), config)

    def biased_texts(self, question: str, passages: Sequence[str]) -> list[str]:
        """The texts whose tokens the reply is biased toward: the passages in context and, when it is at least
        `own_passage_tokens` long (None: never), the user's message, whose pasted passage should weigh as much
        as a retrieved one."""
        if not passages:
            return []
        limit = self.own_passage_tokens
        own = limit is not None and len(self.lm.tokenizer.encode(question, add_special_tokens=False)) >= limit
        return [*passages, *([question] if own else [])]

    def options(self) -> dict[str, object]:
        return {
            "top_k": self.top_k,
            "context_tokens": self.context_tokens,
            "chunk_tokens": self.chunk_tokens,
            "min_relative_score": self.min_relative_score,
            "require_new_terms": self.require_new_terms,
            "split_questions": self.split_questions,
            "rerank": self.rerank,
            "min_similarity": self.min_similarity,
            "min_question_gain": self.min_question_gain,
            "lexical_gate": self.lexical_gate,
            "order": self.order,
            "logit_bias": self.logit_bias,
            "own_passage_tokens": self.own_passage_tokens,
            "max_new_tokens": self.max_new_tokens,
            "vectors": self.vectors,
        }

    def save(self, path: Path) -> None:
        chunks = list(self.chunks.values())
        tensors: dict[str, torch.Tensor] = {}
        if self._embedder is not None and chunks:
            texts = [IndexedPage(id=c.id, title=c.title, body=c.text).embed_text() for c in chunks]
            tensors["embeddings"] = torch.from_numpy(self._embedder.encode(texts))
        meta = {"options": self.options(), "chunks": [asdict(c) for c in chunks]}
        save_checkpoint(path, self.name, self.lm.fingerprint, tensors, meta)

    def load(self, path: Path) -> None:
        tensors, meta = load_checkpoint(path, self.name, self.lm.fingerprint)
        options = meta.get("options", {})
        for key in (self.options().keys() - {"vectors"}) & options.keys():
            setattr(self, key, options[key])
        chunks = [Chunk(**c) for c in meta.get("chunks", [])]
        if self._embedder is not None and "embeddings" in tensors and len(tensors["embeddings"]) == len(chunks):
            texts = [IndexedPage(id=c.id, title=c.title, body=c.text).embed_text() for c in chunks]
            self._embedder.vectors.update(zip(texts, tensors["embeddings"].numpy(), strict=True))
        self.reset()
        self.index.upsert_chunks(chunks)
        self.chunks = {c.id: c for c in chunks}
