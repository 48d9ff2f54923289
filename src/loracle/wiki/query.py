"""Answer a question from the wiki: search it, let the writer answer from the best pages, cite pages and raw lines.

`save=True` files the answer as a page under answers/, linked from the index and logged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from loracle.confine import read_text_in
from loracle.documents import slugify
from loracle.errors import LoracleError
from loracle.kb import KBPaths
from loracle.llm import LLM
from loracle.search.kb_search import search_kb
from loracle.wiki.extract import content_words, one_line
from loracle.wiki.index import append_log, rebuild_index
from loracle.wiki.ingest import today
from loracle.wiki.layout import page_rel
from loracle.wiki.pages import Page, Section, read_page_in, write_page
from loracle.wiki.state import load_state, save_state, wiki_lock

PAGE_CHARS = 900  # of each page put in front of the model
_LINE_REF_RE = re.compile(r"`([^`]+):(\d+)`")


@dataclass
class SourceLine:
    source: str  # raw file, relative to the KB root
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass
class PageCitation:
    page: str  # relative to wiki/
    title: str
    lines: list[SourceLine] = field(default_factory=list)


@dataclass
class QueryAnswer:
    question: str
    text: str
    citations: list[PageCitation]
    llm_calls: int = 0
    saved: str | None = None


def query(kb: KBPaths, question: str, llm: LLM, n: int = 4, save: bool = False, mode: str = "hybrid") -> QueryAnswer:
    if not question.strip():
        raise LoracleError("empty question")
    hits = search_kb(kb, question, n=n, mode=mode).hits
    pages: list[tuple[str, Page]] = []
    for hit in hits:
        try:
            pages.append((hit.path, read_page_in(kb.wiki, hit.path)))
        except (OSError, UnicodeDecodeError, LoracleError):
            continue  # gone since it was indexed, or no longer a page of wiki/
    if not pages:
        raise LoracleError(f"{kb.wiki}: nothing in the wiki matches {question!r} (ingest some sources first)")
    before = llm.usage()
    context = "\n\n".join(f"[{i}] {_page_text(page)[:PAGE_CHARS]}" for i, (_, page) in enumerate(pages, start=1))
    answer = llm.complete(
        [
            {"role": "system", "content": "Answer from the wiki pages given. If they do not say, say you do not know."},
            {
                "role": "user",
                "content": f"Wiki pages:\n{context}\n\nQuestion: {question}\nAnswer in one or two sentences.",
            },
        ],
        max_tokens=120,
    ).strip()
    words = set(content_words(f"{question} {answer}"))
    citations = [
        PageCitation(rel, str(page.frontmatter.get("title") or Path(rel).stem), _source_lines(kb, page, words))
        for rel, page in pages
    ]
    result = QueryAnswer(question, answer, citations, (llm.usage() - before).calls)
    if save:
        result.saved = _save_answer(kb, result)
    return result


def _page_text(page: Page) -> str:
    title = page.frontmatter.get("title", "")
    return f"{title}\n" + "\n".join(f"{s.heading}\n{s.text}" if s.heading else s.text for s in page.sections)


def _source_lines(kb: KBPaths, page: Page, words: set[str], limit: int = 2) -> list[SourceLine]:
    """The raw lines behind a page that best match the question and answer (by shared content words)."""
    candidates: dict[tuple[str, int], str] = {}
    for source in page.frontmatter.get("sources") or []:
        raw = kb.root / str(source)
        try:
            lines = read_text_in(raw, kb.raw).splitlines()
        except (UnicodeDecodeError, OSError, LoracleError):
            continue  # gone, unreadable, or not a file of raw/
        for number, text in enumerate(lines, start=1):
            if text.strip() and not text.startswith(("---", "#")):
                candidates[(str(source), number)] = text.strip()
    for match in _LINE_REF_RE.finditer("\n".join(s.text for s in page.sections)):
        key = (match.group(1), int(match.group(2)))
        candidates.setdefault(key, "")
    scored = sorted(
        ((len(words & set(content_words(text))), key, text) for key, text in candidates.items()),
        key=lambda item: (-item[0], item[1]),
    )
    return [SourceLine(key[0], key[1], text) for score, key, text in scored[:limit] if score > 0]


def _save_answer(kb: KBPaths, answer: QueryAnswer) -> str:
    with wiki_lock(kb):
        state = load_state(kb)
        rel = page_rel("answer", slugify(answer.question, 70))
        citation_lines = []
        sources: list[str] = []
        for cite in answer.citations:
            refs = ", ".join(f"`{line}`" for line in cite.lines)
            citation_lines.append(f"- [[{Path(cite.page).stem}|{cite.title}]]" + (f" ({refs})" if refs else ""))
            sources.extend(line.source for line in cite.lines if line.source not in sources)
        meta = {
            "title": answer.question,
            "type": "answer",
            "summary": one_line(answer.text),
            "sources": sources,
            "updated": today(),
        }
        sections = [
            Section("", f"# {answer.question}"),
            Section("Answer", answer.text),
            Section("Citations", "\n".join(citation_lines)),
        ]
        page = Page(meta, sections)
        if (kb.wiki / rel).exists():  # asked again: a person's own keys stay, in their order
            page.frontmatter = read_page_in(kb.wiki, rel).frontmatter
            page.frontmatter.update(meta)
        write_page(kb.wiki / rel, page)
        append_log(kb, "query", answer.question, [f"- answer page: [[{Path(rel).stem}]]"])
        rebuild_index(kb, state)
        save_state(kb, state)
    return rel
