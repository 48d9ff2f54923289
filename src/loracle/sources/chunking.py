"""Split a document into retrieval chunks by headings and paragraphs, each with the source lines it spans.

Token counts are estimates (a word or punctuation mark ~ 1 token, each CJK character 1 token): close enough
to keep chunks inside a budget without loading a tokenizer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from loracle.documents import Document
from loracle.sources.sentences import sentence_spans

_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_]+|[^\w\s]", re.UNICODE)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
DEFAULT_MAX_TOKENS = 200


@dataclass(frozen=True)
class Chunk:
    """A piece of a document. Lines are 1-based and inclusive, counted in the source file when known."""

    doc_id: str
    title: str
    text: str
    start_line: int
    end_line: int
    heading: str = ""
    path: str = ""  # the source file, when the document has one

    @property
    def id(self) -> str:
        return f"{self.doc_id}#L{self.start_line}-L{self.end_line}"


def estimate_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


@dataclass
class _Block:
    """Consecutive lines that belong together: a paragraph, or one heading line."""

    lines: list[str]
    start: int  # 1-based line number of the first line
    heading: str | None = None


def chunk_document(doc: Document, max_tokens: int = DEFAULT_MAX_TOKENS) -> list[Chunk]:
    """`doc.text` as chunks of at most ~`max_tokens`: a heading starts a new chunk, paragraphs are packed
    together while they fit, and an overlong paragraph is split by lines (an overlong line by words)."""
    if max_tokens < 8:
        raise ValueError("max_tokens must be at least 8")
    offset = body_line_offset(doc)
    lines = doc.text.splitlines()
    chunks: list[Chunk] = []
    heading = ""
    pending: list[tuple[int, str]] = []  # (line number, text) of the chunk being filled; a long line in pieces
    pending_tokens = 0

    def flush() -> None:
        nonlocal pending, pending_tokens
        if pending:
            first, last = pending[0][0], pending[-1][0]
            whole = all(piece == lines[n - 1] for n, piece in pending)
            text = "\n".join(lines[first - 1 : last]) if whole else "\n".join(piece for _, piece in pending)
            chunks.append(Chunk(doc.id, doc.title, text, first + offset, last + offset, heading, str(doc.path or "")))
        pending, pending_tokens = [], 0

    for block in _blocks(doc.text):
        if block.heading is not None:
            flush()
            heading = block.heading
        elif pending and pending_tokens + estimate_tokens("\n".join(block.lines)) > max_tokens:
            flush()  # the paragraph fits a chunk of its own better than the rest of this one
        for number, piece in _fit_lines(block, max_tokens):
            tokens = estimate_tokens(piece)
            if pending and pending_tokens + tokens > max_tokens:
                flush()
            pending.append((number, piece))
            pending_tokens += tokens
    flush()
    return chunks


def _blocks(text: str) -> list[_Block]:
    """Paragraphs and heading lines, with line numbers; headings inside ``` fences are plain text."""
    blocks: list[_Block] = []
    current: _Block | None = None
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line)
        if match:
            blocks.append(_Block([line], number, heading=match.group(1)))
            current = None
        elif not line.strip() and not fenced:
            current = None
        else:
            if current is None:
                current = _Block([], number)
                blocks.append(current)
            current.lines.append(line)
    return blocks


def _fit_lines(block: _Block, max_tokens: int) -> list[tuple[int, str]]:
    """The block's lines with numbers; a line over the budget is cut into pieces (same number) by `_split_line`."""
    out: list[tuple[int, str]] = []
    for number, line in enumerate(block.lines, start=block.start):
        out.extend((number, piece) for piece in _split_line(line, max_tokens))
    return out


def _split_line(line: str, max_tokens: int) -> list[str]:
    """`line` as pieces of at most `max_tokens`, as even in size as whole sentences allow.

    Markdown paragraphs are often one long line. Cutting such a line every `max_tokens` tokens split sentences
    in two, so a fact's subject and its value could land in different chunks, and it left a tail of a few words
    as a chunk of its own. Only a sentence over the budget is cut at token boundaries.
    """
    if estimate_tokens(line) <= max_tokens:
        return [line]
    units = [span for start, end in sentence_spans(line) for span in _token_spans(line, start, end, max_tokens)]
    sizes = [estimate_tokens(line[start:end]) for start, end in units]
    target = sum(sizes) / math.ceil(sum(sizes) / max_tokens)  # the mean size of the fewest pieces that could fit
    pieces: list[list[tuple[int, int]]] = [[]]
    used = 0
    for unit, size in zip(units, sizes, strict=True):
        if pieces[-1] and (used + size > max_tokens or used + size / 2 > target):
            pieces.append([])
            used = 0
        pieces[-1].append(unit)
        used += size
    return [line[piece[0][0] : piece[-1][1]] for piece in pieces]


def _token_spans(line: str, start: int, end: int, max_tokens: int) -> list[tuple[int, int]]:
    """line[start:end] as (start, end) spans of at most `max_tokens` tokens each and of even size, cut at token
    boundaries."""
    spans = [m.span() for m in _TOKEN.finditer(line, start, end)]
    if len(spans) <= max_tokens:
        return [(start, end)]
    size = math.ceil(len(spans) / math.ceil(len(spans) / max_tokens))
    return [(spans[first][0], spans[min(first + size, len(spans)) - 1][1]) for first in range(0, len(spans), size)]


def body_line_offset(doc: Document) -> int:
    """How many file lines come before `doc.text` in its source file (frontmatter, leading blanks); 0 if unknown.

    Lets chunk line numbers point at lines of the file on disk rather than of the extracted body.
    """
    path = doc.path
    if path is None or not doc.text or Path(path).suffix.lower() not in (".md", ".markdown", ".txt"):
        return 0
    try:
        raw = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return 0
    position = raw.find(doc.text)
    return raw.count("\n", 0, position) if position > 0 else 0
