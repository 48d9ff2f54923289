"""Where sentences end: the one rule that chunking, self-study, the context gate and the wiki's summaries share.

A sentence ends at ".", "!" or "?" (and any closing quotes or brackets after it) followed by white space,
unless the next word starts with a lowercase letter: "e.g. the" and "approx. five" go on. "3.4" has no
space, so it is no end either. A CJK full stop, exclamation or question mark ends a sentence with or without
a space after it, since CJK text puts none between sentences.
"""

from __future__ import annotations

import re

_END = re.compile(r"[.!?][\"'\u201d\u2019)\]]*\s+|[\u3002\uff01\uff1f]\s*")
_WORD = re.compile(r"\w+", re.UNICODE)


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(start, end) offsets in `text` of the sentences of text[start:end], the white space between them left
    out; blank stretches are dropped."""
    stop = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    begin = start
    for match in _END.finditer(text, start, stop):
        after = match.end()
        if text[match.start()] in ".!?" and after < stop and text[after].islower():
            continue
        spans.append((begin, match.start() + len(match.group(0).rstrip())))
        begin = after
    spans.append((begin, stop))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def split_sentences(text: str, min_words: int = 1) -> list[str]:
    """The sentences of `text` with its white space flattened, leaving out those of fewer than `min_words`
    words."""
    flat = " ".join(text.split())
    found = (flat[a:b] for a, b in sentence_spans(flat))
    return [s for s in found if len(_WORD.findall(s)) >= min_words]


def without_headings(markdown: str) -> str:
    """Markdown without its heading lines, so that a list of sentences starts with prose, not a title."""
    return "\n".join(line for line in markdown.splitlines() if not line.lstrip().startswith("#"))
