"""What the writer LLM reads out of one source, checked against the source text.

Few calls per source (a summary, then names), small flat schemas, and a check that every name occurs
in the source and every summary sentence is mostly made of the source's words: what fails is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import BaseModel

from loracle.documents import Document
from loracle.errors import LoracleError
from loracle.llm import LLM
from loracle.sources.sentences import split_sentences, without_headings

MAX_SOURCE_CHARS = 6000  # what the writer sees of a source (small models have short contexts)
MAX_ENTITIES = 12
MAX_CONCEPTS = 8
_WORD_RE = re.compile(r"\w+", re.UNICODE)
_SENTENCE_DONE_RE = re.compile(r"[.!?。！？]\s")  # followed by a space: "3." of "3.4" is no sentence end yet
_ARTICLE_RE = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)
_STOPWORD_TEXT = (
    "a an the of in on at to for and or but is are was were be been it its this that these those with by from as "
    "which who whom whose what when where why how not no also has have had do does did into than then there their "
    "they them he she his her we our you your i can will would may might about over after before during"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())

SYSTEM = "You maintain a wiki. You write short, factual text using only what the document says."


class Names(BaseModel):
    """The one JSON shape asked of the model per source: flat lists of strings."""

    entities: list[str] = []
    concepts: list[str] = []


@dataclass
class Extraction:
    summary: str
    one_line: str
    entities: list[str]
    concepts: list[str]
    notes: list[str] = field(default_factory=list)  # what was dropped or could not be read, for the report


def extract(doc: Document, writer: LLM, fast: LLM) -> Extraction:
    """Summary (writer) and names (fast): two LLM calls, three when the names answer needs its retry."""
    text = doc.text[:MAX_SOURCE_CHARS]
    notes: list[str] = []
    answer = writer.complete(
        [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Document:\n{text}\n\nSummarise the document in two or three sentences."},
        ],
        max_tokens=120,
        stop=lambda answer: len(_SENTENCE_DONE_RE.findall(answer)) >= 3,
    )
    summary_sentences = [
        s for s in split_sentences(without_headings(answer), min_words=3) if supported_sentence(s, doc.text)
    ]
    if not summary_sentences:
        notes.append("the model's summary was not supported by the source; used the source's opening sentences")
        summary_sentences = split_sentences(without_headings(doc.text), min_words=3)[:2]
    summary = " ".join(summary_sentences)
    entities: list[str] = []
    concepts: list[str] = []
    try:
        names = fast.complete_json(
            [
                {"role": "system", "content": SYSTEM},
                {
                    "role": "user",
                    "content": f"Document:\n{text}\n\nList the named people, places, organisations and things in the "
                    "document (entities), and the main ideas or topics (concepts), copied exactly as written.",
                },
            ],
            Names,
            max_tokens=160,
        )
        entities, dropped_e = supported_names(names.entities, doc.text, MAX_ENTITIES)
        concepts, dropped_c = supported_names(names.concepts, doc.text, MAX_CONCEPTS)
        # a "name" without a capital letter is an idea or a common noun, not a named thing
        concepts += [e for e in entities if not any(ch.isupper() for ch in e)]
        entities = [e for e in entities if any(ch.isupper() for ch in e)]
        concepts = list(dict.fromkeys(c for c in concepts if c.lower() not in {e.lower() for e in entities}))
        concepts = concepts[:MAX_CONCEPTS]
        if dropped_e or dropped_c:
            notes.append(f"dropped names not found in the source: {', '.join((dropped_e + dropped_c)[:6])}")
    except LoracleError as exc:
        notes.append(f"no entities or concepts: {exc}")
    return Extraction(summary, one_line(summary), entities, concepts, notes)


def content_words(text: str) -> list[str]:
    return [w for w in (m.lower() for m in _WORD_RE.findall(text)) if w not in _STOPWORDS]


def supported_sentence(sentence: str, source: str, threshold: float = 0.75) -> bool:
    """Most of the sentence's content words occur in the source (a cheap guard against invented claims)."""
    words = content_words(sentence)
    if not words:
        return False
    vocabulary = set(content_words(source))
    return sum(w in vocabulary for w in words) / len(words) >= threshold


def supported_names(candidates: list[str], source: str, limit: int) -> tuple[list[str], list[str]]:
    """Names that occur in the source (case- and space-insensitively), deduplicated; and the ones dropped."""
    haystack = " ".join(source.split()).lower()
    kept: list[str] = []
    dropped: list[str] = []
    seen: set[str] = set()
    for raw in candidates:
        name = " ".join(str(raw).strip().strip("\"'`*[]#").split())
        name = _ARTICLE_RE.sub("", name)  # "The Harrow Telescope" and "Harrow Telescope" are one page
        key = name.lower()
        if not name or key in seen or len(name) > 80 or not _WORD_RE.search(name):
            continue
        seen.add(key)
        if key in haystack and len(key) >= 3:
            kept.append(_as_written(name, source))
        else:
            dropped.append(name)
    return kept[:limit], dropped


def _as_written(name: str, source: str) -> str:
    """The name with the source's own capitalisation (the model may have changed it)."""
    flat = " ".join(source.split())
    if name in flat:
        return name
    index = flat.lower().find(name.lower())
    return flat[index : index + len(name)] if index >= 0 else name


def one_line(summary: str, limit: int = 200) -> str:
    first = (split_sentences(summary, min_words=3) or [summary.strip()])[0]
    return first if len(first) <= limit else first[: limit - 1].rsplit(" ", 1)[0] + "…"


@dataclass(frozen=True)
class Mention:
    sentence: str
    line: int  # 1-based line of the raw text where the name first occurs


def find_mention(name: str, text: str) -> Mention | None:
    """The sentence around the first occurrence of `name` in `text` (prose before headings), and its line."""
    pattern = r"\s+".join(re.escape(part) for part in name.split())
    matches = list(re.finditer(pattern, text, flags=re.IGNORECASE))
    if not matches:
        return None
    match = next((m for m in matches if not _on_heading_line(text, m.start())), matches[0])
    boundaries = list(_BOUNDARY_RE.finditer(text, 0, match.start()))
    start = boundaries[-1].end() if boundaries else 0
    end_match = re.search(r"[.!?](\s|$)|\n\s*\n", text[match.end() :])
    end = match.end() + (end_match.end() if end_match else len(text) - match.end())
    sentence = " ".join(text[start:end].split()).lstrip("# ")
    if len(sentence) > 300:
        sentence = sentence[:299].rsplit(" ", 1)[0] + "…"
    return Mention(sentence, text.count("\n", 0, match.start()) + 1)


_BOUNDARY_RE = re.compile(r"[.!?。！？]\s+|\n\s*\n|\n(?=#)")


def _on_heading_line(text: str, index: int) -> bool:
    return text[text.rfind("\n", 0, index) + 1 :].startswith("#")


def blank_frontmatter(raw: str) -> str:
    """The raw text with its frontmatter lines emptied, so line numbers still match the file."""
    if not raw.startswith("---"):
        return raw
    lines = raw.split("\n")
    for index in range(1, len(lines)):
        if lines[index].strip() in ("---", "..."):
            return "\n" * (index + 1) + "\n".join(lines[index + 1 :])
    return raw
