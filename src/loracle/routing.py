"""Route a question to the adapters that match it, so many loaded adapters don't garble each other.

Each adapter is known by a text: the hypernet learner's chunk adapters by the chunk's text, the ttt
learner's document adapters by the questions it was trained to answer and its document's words. Adding
every adapter's delta at once drowns the one that matters; the router scores each text against the question
(IDF-weighted word overlap, cosine normalised, computed over the loaded adapters) so only the best few are
used. A text is a candidate only when it holds at least half of the question's words (`coverage`): one shared
word does not make a question about a chunk, and adapters applied to a question about something else change
its answer.

`KeyRouter` adds meaning to the words: with an embedder, an adapter is also a candidate when one of its
trained questions is close to the question (cosine >= `min_similarity`), and candidates are ranked by their
word score plus twice that cosine. Documents of one article share their
words, and generated documents their templates: words and meaning together tell them apart better than
either alone or their ranks fused (docs/experiments/routing.md). With a
`background` (questions no item answers: the general prompts every ttt adapter was trained to leave alone),
an item is routed to only when its nearest key is closer to the question than the nearest background
question: "What is the capital of France?" shares words with a document that names a capital, but it is
nearer to "What is the capital of Portugal?" than to anything that document was trained to answer.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from loracle.search.embedder import Embedder

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_STOP = frozenset(
    re.findall(
        r"\w+",
        "the a an of in on at to for and or is are was were be by with from as it its this that which who whom what "
        "when where why how does did do has have had into than then there their they he she his her not no",
    )
)


def words(text: str) -> list[str]:
    return [w for w in (m.group(0).lower() for m in _WORD.finditer(text)) if w not in _STOP]


def best_first(scores: Sequence[float]) -> list[int]:
    """Indices of `scores`, highest first; ties keep index order."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


class ChunkRouter:
    """Scores chunk texts against questions; `top(question, k)` gives the indices of the best chunks."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.bags = [Counter(words(t)) for t in texts]
        df = Counter(w for bag in self.bags for w in bag)
        n = len(self.bags)
        self.idf = {w: math.log(1 + n / c) for w, c in df.items()}
        self.norms = [math.sqrt(sum((c * self.idf[w]) ** 2 for w, c in bag.items())) or 1.0 for bag in self.bags]

    def scores(self, question: str) -> list[float]:
        q = Counter(words(question))
        return [
            sum(qc * bag[w] * self.idf.get(w, 0.0) ** 2 for w, qc in q.items() if w in bag) / norm
            for bag, norm in zip(self.bags, self.norms, strict=True)
        ]

    def coverage(self, question: str) -> list[float]:
        """For each chunk, the share of the question's distinct (non-stop) words that occur in it."""
        asked = set(words(question))
        if not asked:
            return [0.0] * len(self.bags)
        return [sum(w in bag for w in asked) / len(asked) for bag in self.bags]

    def top(self, question: str, k: int, min_coverage: float | None = None) -> list[int]:
        """The k best chunks (all when there are at most k), best first; ties keep document order. With
        `min_coverage`, only those of them that share a word with the question and hold that share of its words."""
        scores = self.scores(question)
        order = best_first(scores)[:k]
        if min_coverage is None:
            return order
        coverage = self.coverage(question)
        return [i for i in order if scores[i] > 0 and coverage[i] >= min_coverage]


#: keys longer than this are word lists (a document's distinct words), not questions: never embedded
MAX_EMBEDDED_KEY_WORDS = 32
#: how much the nearest trained question's cosine weighs beside the word score (both 0-1) when candidates are
#: ranked (docs/experiments/routing.md, "Ranking candidates")
MEANING_WEIGHT = 2.0


@dataclass(frozen=True)
class KeyMatch:
    """One routed item and why: its word score and coverage, and its nearest key's cosine (0 unembedded)."""

    index: int
    score: float
    coverage: float
    similarity: float


def key_vectors(embedder: Embedder, keys: Sequence[str]) -> np.ndarray:
    """[n, dim] unit vectors of the question-like keys among `keys`, kept in the cache folder
    (<cache>/routing/), so a knowledge base's adapters are embedded once."""
    import torch

    from loracle.stored import stored

    texts = [k for k in keys if 0 < len(k.split()) <= MAX_EMBEDDED_KEY_WORDS]
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)

    def build() -> dict[str, torch.Tensor]:
        return {"vectors": torch.from_numpy(embedder.encode(texts))}

    return stored("routing", "keys", f"{embedder.name}|{texts}", build)["vectors"].numpy()


class KeyRouter:
    """Routes questions over items each known by a list of keys (see the module docstring): word overlap
    always, and the nearest key by meaning when an embedder is given."""

    def __init__(
        self,
        keys: Sequence[Sequence[str]],
        embedder: Embedder | None = None,
        background: Sequence[str] = (),
        meaning_weight: float = MEANING_WEIGHT,
    ) -> None:
        self.meaning_weight = meaning_weight
        self.lexical = ChunkRouter([" ".join(k) for k in keys])
        self.embedder = embedder
        self.vectors = [key_vectors(embedder, k) for k in keys] if embedder is not None else []
        self.background = key_vectors(embedder, background) if embedder is not None and background else None
        self._last: tuple[str, np.ndarray] | None = None

    def _asked(self, question: str) -> np.ndarray:
        """The question's unit vector (the last one is kept: routing asks for it twice)."""
        assert self.embedder is not None
        if self._last is None or self._last[0] != question:
            self._last = (question, self.embedder.encode([question])[0])
        return self._last[1]

    def similarity(self, question: str) -> list[float]:
        """For each item, the cosine of the question with its nearest embedded key (0 without an embedder)."""
        if self.embedder is None:
            return [0.0] * len(self.lexical.bags)
        asked = self._asked(question)
        return [float((v @ asked).max()) if len(v) else 0.0 for v in self.vectors]

    def background_similarity(self, question: str) -> float:
        """The cosine of the question with its nearest background question (-1 without a background)."""
        if self.background is None or not len(self.background):
            return -1.0
        return float((self.background @ self._asked(question)).max())

    def route(self, question: str, k: int, min_coverage: float, min_similarity: float | None = None) -> list[KeyMatch]:
        """The k best items for `question`, best first: those holding `min_coverage` of its words (and one at
        least), or, with an embedder and `min_similarity`, whose nearest key is that close; with a background,
        only those whose nearest key is closer than the nearest background question. Ranked by the word score
        plus `meaning_weight` times the nearest key's cosine when embedded; meaning decides a tie."""
        scores, coverage = self.lexical.scores(question), self.lexical.coverage(question)
        dense = self.embedder is not None and min_similarity is not None
        similarity = self.similarity(question) if dense else [0.0] * len(scores)
        general = self.background_similarity(question) if dense else -1.0
        chosen = [
            i
            for i in range(len(scores))
            if ((scores[i] > 0 and coverage[i] >= min_coverage) or (dense and similarity[i] >= min_similarity))
            and (not dense or similarity[i] > general)
        ]
        weight = self.meaning_weight if dense else 0.0
        ranking = [score + weight * similarity[i] for i, score in enumerate(scores)]
        chosen.sort(key=lambda i: (-ranking[i], -similarity[i], i))
        return [KeyMatch(i, scores[i], coverage[i], similarity[i]) for i in chosen[:k]]
