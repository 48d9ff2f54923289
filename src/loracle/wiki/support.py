"""Does the source say it? An offline check of one written sentence against its source.

A sentence is supported when some window of at most `window` consecutive source sentences holds every one
of its content words (as Snowball stems: "retired" matches "retire", "directed" does not match "director")
and every one of its numbers, and agrees with it on negation and hedging: a sentence may not add or drop a
"not" or a "may" that the window has. This is lexical, so it rejects a faithful paraphrase that uses other
words, and it can accept the source's words recombined into a claim the source does not make; its precision
and recall on hand-labelled sentences are measured in benchmarks/wiki.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loracle.wiki.sourcetext import SourceSentence, plain_text, source_sentences
from loracle.wiki.words import content_stems, polarity

DEFAULT_WINDOW = 2


@dataclass(frozen=True)
class Support:
    supported: bool
    lines: tuple[int, ...] = ()  # the source lines of the best window (its sentences' first lines)
    missing: tuple[str, ...] = ()  # stems of the sentence the best window lacks
    reason: str = ""  # why it is not supported, in a few words


class SupportChecker:
    """Checks sentences against one source; build it once per source and call `check` per sentence."""

    def __init__(self, source: str | Sequence[SourceSentence], window: int = DEFAULT_WINDOW) -> None:
        """`source` is the source's text (frontmatter blanked, so lines match the file) or its sentences."""
        if isinstance(source, str):
            source = source_sentences(source, min_words=1)
        self.sentences = list(source)
        self.window = max(1, window)
        self._stems = [content_stems(s.plain) for s in self.sentences]
        self._polarity = [polarity(s.plain) for s in self.sentences]
        self._where: dict[str, set[int]] = {}
        for index, stems in enumerate(self._stems):
            for item in stems:
                self._where.setdefault(item, set()).add(index)

    def check(self, sentence: str) -> Support:
        """Whether the source supports `sentence` (markdown: its links read as their labels)."""
        plain = plain_text(sentence)
        wanted = content_stems(plain)
        if not wanted:
            return Support(False, reason="no content words")
        wanted_polarity = polarity(plain)
        best: tuple[int, int, int] | None = None  # (missing count, window size, start)
        starts = sorted({i for item in wanted for i in self._where.get(item, ())})
        for start in starts:
            have: set[str] = set()
            for size in range(1, self.window + 1):
                end = start + size
                if end > len(self.sentences):
                    break
                have |= self._stems[end - 1]
                missing = len(wanted - have)
                if best is None or (missing, size) < best[:2]:
                    best = (missing, size, start)
                if missing == 0:
                    window_polarity = frozenset().union(*self._polarity[start:end])
                    if window_polarity == wanted_polarity:
                        lines = tuple(s.line for s in self.sentences[start:end])
                        return Support(True, lines=lines)
                    best = (0, size, start)
                    break
        if best is None:
            return Support(False, missing=tuple(sorted(wanted)), reason="none of its words are in the source")
        missing_count, size, start = best
        lines = tuple(s.line for s in self.sentences[start : start + size])
        if missing_count == 0:
            window_polarity = frozenset().union(*self._polarity[start : start + size])
            added = " and ".join(sorted(wanted_polarity - window_polarity))
            dropped = " and ".join(sorted(window_polarity - wanted_polarity))
            why = f"the source is not {added} there" if added else f"the source is {dropped} there"
            return Support(False, lines=lines, reason=why)
        have = set().union(*self._stems[start : start + size])
        missing = tuple(sorted(wanted - have))
        return Support(False, lines=lines, missing=missing, reason=f"not in the source: {', '.join(missing[:5])}")


def is_supported(sentence: str, source: str, window: int = DEFAULT_WINDOW) -> bool:
    """One sentence against one source text (builds a checker; use SupportChecker for many sentences)."""
    return SupportChecker(source, window).check(sentence).supported
