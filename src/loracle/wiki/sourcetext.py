"""A source's prose as sentences, each with the raw line it starts on and the wikilinks it holds.

Headings, code, tables and frontmatter are not prose and are left out; list items and paragraphs are. A
sentence is kept twice: as written (markdown, its `[[links]]` as the source wrote them, so a page can quote
it and rewrite its links) and as plain text (links read as their labels, markup dropped) for the checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from loracle.sources.sentences import sentence_spans

WIKILINK_RE = re.compile(r"(!?)\[\[([^\[\]|#^]*)(?:[#^][^\[\]|]*)?(?:\|([^\[\]]*))?\]\]")
_MD_LINK_RE = re.compile(r"(!?)\[([^\[\]]*)\]\([^()\s]*(?:\([^()]*\))?[^()]*\)")
_TAG_RE = re.compile(r"<[^<>\n]{1,200}>")
_EMPHASIS_RE = re.compile(r"(\*{1,3}|_{1,3}|~~|==)(?=\S)(.+?)(?<=\S)\1")
_FOOTNOTE_RE = re.compile(r"\[\^[^\]]*\]|\[\d{1,3}\]")
_BULLET_RE = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+(?:\[[ xX]\]\s+)?")
_QUOTE_RE = re.compile(r"^\s*(?:>\s?)+")
_FENCE_RE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class SourceLink:
    target: str  # the page name the source links to, as written
    label: str  # the text shown (the target when the link has no label)


@dataclass(frozen=True)
class SourceSentence:
    line: int  # 1-based line of the raw text where the sentence starts
    text: str  # markdown as written, white space flattened
    plain: str  # what a reader sees: links as their labels, markup dropped
    links: tuple[SourceLink, ...]


def plain_text(markdown: str) -> str:
    """Markdown as a reader sees it: `[[Page|label]]` as "label", `[text](url)` as "text", markup dropped."""
    text = WIKILINK_RE.sub(lambda m: "" if m.group(1) else (m.group(3) or m.group(2)).strip(), markdown)
    text = _MD_LINK_RE.sub(lambda m: "" if m.group(1) else m.group(2), text)
    text = _TAG_RE.sub("", _FOOTNOTE_RE.sub("", text))
    for _ in range(2):  # nested emphasis: ***a** b*
        text = _EMPHASIS_RE.sub(r"\2", text)
    return " ".join(text.replace("`", "").split())


def links_in(markdown: str) -> tuple[SourceLink, ...]:
    """The wikilinks of a piece of markdown (embeds left out), in order."""
    found = []
    for match in WIKILINK_RE.finditer(markdown):
        target = match.group(2).strip()
        if match.group(1) or not target:
            continue
        found.append(SourceLink(target, (match.group(3) or target).strip()))
    return tuple(found)


def source_sentences(raw: str, min_words: int = 3) -> list[SourceSentence]:
    """The prose sentences of a source's text (frontmatter already blanked), in order, with their lines."""
    sentences: list[SourceSentence] = []
    for start_line, block in _blocks(raw):
        joined, starts = _join(block)
        for begin, end in sentence_spans(joined):
            text = joined[begin:end].strip()
            plain = plain_text(text)
            if len(re.findall(r"\w+", plain)) < min_words:
                continue
            line = start_line + sum(1 for offset in starts[1:] if offset <= begin)
            sentences.append(SourceSentence(line, text, plain, links_in(text)))
    return sentences


def _blocks(raw: str) -> list[tuple[int, list[str]]]:
    """Paragraphs and list items as (first line number, their lines with list and quote markers removed)."""
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] = []
    first = 0
    in_fence = False

    def close() -> None:
        if current:
            blocks.append((first, list(current)))
            current.clear()

    for number, line in enumerate(raw.split("\n"), start=1):
        if _FENCE_RE.match(line):
            in_fence = not in_fence
            close()
            continue
        stripped = _QUOTE_RE.sub("", line).strip()
        prose = not in_fence and stripped and not stripped.startswith(("#", "|", "<!--", "---", "***", "[^"))
        if not prose:
            close()
            continue
        if _BULLET_RE.match(stripped):
            close()
            stripped = _BULLET_RE.sub("", stripped)
        if not current:
            first = number
        current.append(stripped)
    close()
    return blocks


def _join(lines: list[str]) -> tuple[str, list[int]]:
    """The lines joined by spaces, and the offset where each line starts in the joined text."""
    starts, offset = [], 0
    for line in lines:
        starts.append(offset)
        offset += len(line) + 1
    return " ".join(lines), starts
