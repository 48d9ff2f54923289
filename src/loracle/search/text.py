"""Text preparation for the full-text index: CJK bigrams, FTS5 query building, snippets.

FTS5's unicode61 tokenizer treats a run of Chinese/Japanese characters as one long token, so a word inside
a sentence can never match. The trigram tokenizer fixes that for 3+ character queries but cannot match a
2-character query, and most Chinese words are 2 characters. So CJK runs are indexed as overlapping
bigrams ("東京都庁" -> "東京 京都 都庁"), and a CJK query becomes a phrase of its bigrams, which matches
exactly where the characters are adjacent in the original text.
"""

from __future__ import annotations

import re

# Han ideographs (incl. extension A and compatibility), hiragana, katakana, half-width katakana.
_CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
_CJK_RUN = re.compile(f"[{_CJK_CLASS}]+")
_WORD = re.compile(f"[{_CJK_CLASS}]+|[^\\W_]+", re.UNICODE)
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")

# Dropped from OR-queries when the query has other words: they match nearly every page and only cost time.
STOPWORDS = frozenset(
    """
    a an and are as at be by for from has have he her his in is it its of on or she that
    the their they this to was were which who with what when where why how does did do
    """.split()  # noqa: SIM905
)


def bigrams(run: str) -> list[str]:
    """Overlapping character pairs of a CJK run (a single character stays itself)."""
    if len(run) < 2:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def index_form(text: str) -> str:
    """Text as stored in the FTS table: CJK runs replaced by their bigrams, everything else unchanged."""
    if not _CJK_RUN.search(text):
        return text
    return _CJK_RUN.sub(lambda m: " " + " ".join(bigrams(m.group(0))) + " ", text)


def query_terms(query: str) -> list[str]:
    """Search terms of a user query: words (lowercased) and CJK runs, in order, without duplicates."""
    terms: dict[str, None] = {}
    for match in _WORD.finditer(query):
        terms.setdefault(match.group(0).lower(), None)
    words = list(terms)
    content = [w for w in words if w not in STOPWORDS]
    return content or words


def term_expression(term: str) -> str:
    """One search term (from `query_terms`) as an FTS5 expression: a quoted word, or a CJK run's bigram phrase."""
    if _CJK_RUN.fullmatch(term):
        grams = bigrams(term)
        return f'"{grams[0]}"*' if len(term) == 1 else '"' + " ".join(grams) + '"'
    return f'"{term}"'


def fts_query(query: str) -> str:
    """An FTS5 MATCH expression: any term may match (OR), ranked by BM25; '' if the query has no terms.

    Every term is double-quoted, so FTS5 syntax in user input (AND, NEAR, *, column filters) is inert.
    """
    return " OR ".join(term_expression(term) for term in query_terms(query))


def markdown_headings(body: str) -> list[str]:
    """ATX headings (# ...) of a markdown body, outside fenced code blocks."""
    found = []
    fenced = False
    for line in body.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if not fenced and (match := _HEADING.match(line)):
            found.append(match.group(2))
    return found


def snippet(body: str, query: str, width: int = 160) -> str:
    """A one-line excerpt of `body` around the first query term it contains (else its opening)."""
    flat = " ".join(body.split())
    lower = flat.lower()
    positions = [p for term in query_terms(query) if (p := lower.find(term)) >= 0]
    start = max(0, min(positions) - width // 4) if positions else 0
    if start > 0:
        space = flat.find(" ", start)
        start = space + 1 if 0 <= space < start + 20 else start
    excerpt = flat[start : start + width]
    prefix = "…" if start > 0 else ""
    suffix = "…" if start + width < len(flat) else ""
    return prefix + excerpt + suffix
