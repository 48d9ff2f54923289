"""What a source gives the wiki: a summary made of its own sentences, and the names worth a page.

The summary is selected from the source (the lead and the most central sentences), then shortened only by
deletions the shortening check accepts (see shorten.py); every sentence written is checked for support in
the source (support.py) and dropped when it fails. A writer behind an OpenAI-compatible endpoint writes the
summary in its own words instead, under the same check: a sentence it cannot back is kept, marked. Names
come from names.py, with the fast model's list as one of its inputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import BaseModel

from loracle.documents import Document
from loracle.errors import LoracleError
from loracle.llm import LLM, JSONRequest
from loracle.model.chat import Message
from loracle.sources.sentences import split_sentences, without_headings
from loracle.wiki.names import find_names
from loracle.wiki.shorten import LONG_SENTENCE_WORDS, accept_shorter, propose_shorter, trim
from loracle.wiki.sourcetext import SourceSentence, plain_text, source_sentences
from loracle.wiki.support import SupportChecker
from loracle.wiki.words import content_stems, word_set

MAX_SOURCE_CHARS = 6000  # what the writer sees of a source (small models have short contexts)
SUMMARY_SENTENCES = 3
SUMMARY_WORDS = 80
MAX_SHORTENINGS = 2  # writer calls per source to shorten long summary sentences
UNVERIFIED_MARK = "^[not found in the source]"  # an Obsidian inline footnote after an unsupported sentence
_WORD_RE = re.compile(r"\w+", re.UNICODE)
_STOPWORD_TEXT = (
    "a an the of in on at to for and or but is are was were be been it its this that these those with by from as "
    "which who whom whose what when where why how not no also has have had do does did into than then there their "
    "they them he she his her we our you your i can will would may might about over after before during"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_PRONOUN_START = word_set("it its he his she her they their this these those there such")

SYSTEM = "You maintain a wiki. You write short, factual text using only what the document says."


class NamesAnswer(BaseModel):
    """The one JSON shape asked of the model per source: flat lists of strings."""

    entities: list[str] = []
    concepts: list[str] = []


@dataclass(frozen=True)
class Written:
    """A sentence loracle writes on a page, and what backs it."""

    text: str  # markdown; a source sentence keeps the source's links
    lines: tuple[int, ...] = ()  # source lines that support it
    supported: bool = True
    origin: str = "source"  # source (as written), trimmed, shortened (deletions the check accepted) or writer

    @property
    def markdown(self) -> str:
        return self.text if self.supported else f"{self.text} {UNVERIFIED_MARK}"


@dataclass
class Extraction:
    sentences: list[SourceSentence]  # the source's prose, with lines
    summary: list[Written]
    entities: list[str]
    concepts: list[str]
    aliases: dict[str, list[str]] = field(default_factory=dict)  # entity -> other names the source gives it
    shortened: dict[str, Written] = field(default_factory=dict)  # source sentence text -> its shorter form
    notes: list[str] = field(default_factory=list)  # what was dropped or could not be read, for the report

    @property
    def summary_text(self) -> str:
        return " ".join(w.markdown for w in self.summary)

    @property
    def one_line(self) -> str:
        """The first summary sentence as plain text (links as their labels), for frontmatter and the index."""
        return one_line(plain_text(self.summary[0].text)) if self.summary else ""


def extract(doc: Document, text: str, writer: LLM, fast: LLM) -> Extraction:
    """Summary and names of `doc`; `text` is its prose as the raw file holds it (frontmatter blanked)."""
    sentences = source_sentences(text)
    checker = SupportChecker(sentences)
    notes: list[str] = []
    shortened: dict[str, Written] = {}
    summary = _written_summary(doc, writer, checker, notes) if writer.is_endpoint else []
    if not summary:
        chosen = select_summary(sentences, doc.title)
        summary = [_shorter(s, writer, checker, shortened) for s in chosen]
        summary = [w for w in summary if w.supported]  # as written or by deletion: always backed; checked anyway
    offered_entities: list[str] = []
    offered_concepts: list[str] = []
    try:
        answer = fast.ask_json(names_request(doc))
        offered_entities, offered_concepts = answer.entities, answer.concepts
    except LoracleError as exc:
        notes.append(f"no names from the model: {exc}")
    names = find_names(sentences, offered_entities, offered_concepts)
    if names.dropped:
        notes.append(f"dropped names not in the source as names: {', '.join(dict.fromkeys(names.dropped[:6]))}")
    return Extraction(sentences, summary, names.entities, names.concepts, names.aliases, shortened, notes)


def names_request(doc: Document) -> JSONRequest[NamesAnswer]:
    """The one structured call per source: the names and topics the model sees in it."""
    prompt = (
        f"Document:\n{doc.text[:MAX_SOURCE_CHARS]}\n\nList the named people, places, organisations and things "
        "in the document (entities), and the main ideas or topics (concepts), copied exactly as written."
    )
    messages: list[Message] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
    return JSONRequest(messages, NamesAnswer, max_tokens=200, max_items=8, max_chars=48)


def select_summary(
    sentences: list[SourceSentence], title: str, count: int = SUMMARY_SENTENCES, budget: int = SUMMARY_WORDS
) -> list[SourceSentence]:
    """The source's lead and most central sentences, in source order, within a word budget."""
    candidates = [(i, s) for i, s in enumerate(sentences) if len(s.plain.split()) >= 5 and not s.plain.endswith(":")]
    if not candidates:
        return sentences[:1]
    stems = {i: content_stems(s.plain) for i, s in candidates}
    frequency: dict[str, int] = {}
    for found in stems.values():
        for item in found:
            frequency[item] = frequency.get(item, 0) + 1
    title_stems = content_stems(title)
    scores = {}
    for rank, (i, _) in enumerate(candidates):
        central = sum(frequency[item] - 1 for item in stems[i]) / max(1.0, len(stems[i]) ** 0.5)
        scores[i] = central + 3.0 / (rank + 1) + (2.0 if stems[i] & title_stems else 0.0)
    top = max(scores.values()) or 1.0
    chosen: list[int] = []
    words = 0
    for i in sorted(scores, key=lambda i: (-scores[i], i)):
        length = len(sentences[i].plain.split())
        overlaps = any(len(stems[i] & stems[j]) > 0.5 * min(len(stems[i]), len(stems[j])) for j in chosen)
        if overlaps or (chosen and words + length > budget) or scores[i] < 0.2 * top:
            continue
        chosen.append(i)
        words += length
        if len(chosen) == count:
            break
    return [sentences[i] for i in sorted(chosen)]


def _shorter(sentence: SourceSentence, writer: LLM, checker: SupportChecker, cache: dict[str, Written]) -> Written:
    """The sentence, trimmed of parentheses, and shortened by the writer where the shortening check passes."""
    text, origin = sentence.text, "source"
    trimmed = trim(text)
    if trimmed != text:
        text, origin = trimmed, "trimmed"
    long = len(text.split()) > LONG_SENTENCE_WORDS
    if long and not writer.is_endpoint and sum(w.origin == "shortened" for w in cache.values()) < MAX_SHORTENINGS:
        try:
            short = accept_shorter(text, propose_shorter(writer, text))
        except LoracleError:
            short = ""
        if short:
            text, origin = short, "shortened"
    support = checker.check(text)
    written = Written(text, support.lines, support.supported, origin)
    if origin != "source" and written.supported:
        cache[sentence.text] = written
    return written


def _written_summary(doc: Document, writer: LLM, checker: SupportChecker, notes: list[str]) -> list[Written]:
    """The endpoint writer's own summary, each sentence checked; those the source does not back are marked."""
    try:
        answer = writer.complete(
            [
                {"role": "system", "content": SYSTEM},
                {
                    "role": "user",
                    "content": f"Document:\n{doc.text[:MAX_SOURCE_CHARS]}\n\n"
                    "Summarise the document in two or three sentences.",
                },
            ],
            max_tokens=160,
        )
    except LoracleError as exc:
        notes.append(f"the writer's summary failed ({exc}); used the source's own sentences")
        return []
    written = []
    for sentence in split_sentences(without_headings(answer), min_words=3)[: SUMMARY_SENTENCES + 1]:
        support = checker.check(sentence)
        written.append(Written(sentence, support.lines, support.supported, "writer"))
    unsupported = sum(not w.supported for w in written)
    if unsupported:
        notes.append(f"{unsupported} of the writer's {len(written)} summary sentences not found in the source (marked)")
    return written


def description_for(
    name: str, mentions: list[SourceSentence], checker: SupportChecker, shortened: dict[str, Written]
) -> Written | None:
    """A short description of `name`: the source sentence that best says what it is, checked for support."""
    key = name.lower()

    def rank(item: tuple[int, SourceSentence]) -> tuple[int, int, int]:
        index, sentence = item
        plain = sentence.plain.lower()
        subject = plain.startswith((key, f"the {key}"))
        pronoun = plain.split(" ", 1)[0] in _PRONOUN_START
        return (not subject, pronoun, index)

    for _, sentence in sorted(enumerate(mentions), key=rank):
        known = shortened.get(sentence.text)
        text = known.text if known else trim(sentence.text)
        support = checker.check(text)
        if support.supported:
            origin = known.origin if known else ("source" if text == sentence.text else "trimmed")
            return Written(text, support.lines, True, origin)
    return None


def content_words(text: str) -> list[str]:
    return [w for w in (m.lower() for m in _WORD_RE.findall(text)) if w not in _STOPWORDS]


def one_line(summary: str, limit: int = 200) -> str:
    first = (split_sentences(summary, min_words=3) or [summary.strip()])[0]
    return first if len(first) <= limit else first[: limit - 1].rsplit(" ", 1)[0] + "…"


def blank_frontmatter(raw: str) -> str:
    """The raw text with its frontmatter lines emptied, so line numbers still match the file."""
    if not raw.startswith("---"):
        return raw
    lines = raw.split("\n")
    for index in range(1, len(lines)):
        if lines[index].strip() in ("---", "..."):
            return "\n" * (index + 1) + "\n".join(lines[index + 1 :])
    return raw
