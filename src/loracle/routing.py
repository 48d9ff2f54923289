"""Route a question to the adapters that match it, so many loaded adapters don't garble each other.

Each adapter is known by a text: the hypernet learner's chunk adapters by the chunk's text, the ttt
learner's document adapters by the questions it was trained to answer and its document's words. Adding
every adapter's delta at once drowns the one that matters; the router scores each text against the question
(IDF-weighted word overlap, cosine normalised, computed over the loaded adapters) so only the best few are
used. A text is a candidate only when it holds at least half of the question's words (`coverage`): one shared
word does not make a question about a chunk, and adapters applied to a question about something else change
its answer.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

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
