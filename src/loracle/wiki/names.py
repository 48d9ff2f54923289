"""Which names of a source get a page: whole proper names, the source's own links, and checked model picks.

Entities come from three places: the source's `[[links]]` (the author named them), runs of capitalised words
in its prose ("Kestrel Valley Observatory", "University of Tessaly": kept whole), and the writer model's list,
each snapped to the source's own spelling. Concepts are lower-case phrases that the model or a link names
and the source uses at least twice. No name is made of function words or starts or ends on one ("town of"),
and a name found only inside a longer one ("Observatory", "Kestrel Valley") is a fragment, not a page.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from loracle.wiki.sourcetext import SourceSentence
from loracle.wiki.words import FUNCTION_WORDS, HEDGES, NEGATORS, word_set

MAX_ENTITIES = 12
MAX_CONCEPTS = 8
MAX_NAME_WORDS = 6
_WORD_RE = re.compile(r"[^\W_][\w'’\-.]*[^\W_]|[^\W_]", re.UNICODE)
_CONNECTORS = word_set("of the de du da del della der van von la le y bin al")
_ARTICLES = word_set("the a an")
_NOT_NAMES = word_set(
    "january february march april may june july august september october november december "
    "monday tuesday wednesday thursday friday saturday sunday"
)
_DEMONYM_ENDINGS = ("an", "ese", "ish", "ic", "ch", "i")
_ALIAS_GAP_RE = re.compile(
    r"\s*[,(]?\s*(?:or\s+)?(?:(?:also|commonly|sometimes|often|formerly|officially|simply)\s+)*"
    r"(?:known\s+as|called|referred\s+to\s+as|named|abbreviated(?:\s+as)?|(?<=officially\s))\s*(?:the\s+)?",
    re.IGNORECASE,
)
_ATTACHMENTS = word_set("png jpg jpeg gif svg webp bmp pdf mp3 mp4 webm ogg wav m4a mov canvas base")


@dataclass
class Names:
    entities: list[str] = field(default_factory=list)
    concepts: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # names offered (by the model or a link) and refused
    aliases: dict[str, list[str]] = field(default_factory=dict)  # entity -> other names the source gives it


@dataclass
class _Span:
    text: str
    sentence: int
    start: int  # offset in the sentence's plain text
    end: int
    initial: bool  # the sentence's first word


def link_target_name(target: str) -> str:
    """The page name a link target means: `People/Ilse Marrow.md` -> `Ilse Marrow`; "" for an attachment."""
    name = target.strip().replace("\\", "/").rsplit("/", 1)[-1].strip()
    if name.lower().endswith(".md"):
        return name[:-3].strip()
    return "" if name.rsplit(".", 1)[-1].lower() in _ATTACHMENTS and "." in name else name


def find_names(
    sentences: Sequence[SourceSentence],
    offered_entities: Iterable[str] = (),
    offered_concepts: Iterable[str] = (),
    max_entities: int = MAX_ENTITIES,
    max_concepts: int = MAX_CONCEPTS,
) -> Names:
    """The entities and concepts of a source worth a page, most mentioned first (linked ones before all)."""
    spans = [span for index, s in enumerate(sentences) for span in _capitalised_spans(s.plain, index)]
    linked = [n for s in sentences for link in s.links if (n := link_target_name(link.target))]
    result = Names()
    entities: list[str] = [n for n in dict.fromkeys(linked) if any(c.isupper() for c in n[:1])]
    concepts: list[str] = [n for n in dict.fromkeys(linked) if n not in entities and _well_formed(n)]
    entities += [s.text for s in spans if _proper(s.text, spans, sentences)]
    for offered, as_concept in ((offered_entities, False), (offered_concepts, True)):
        for raw in offered:
            name = _clean(str(raw))
            found = _as_written(name, sentences) if name else ""
            if not found or not _well_formed(found):
                if name:
                    result.dropped.append(name)
                continue
            if found[:1].isupper() and not as_concept:
                if _proper(found, spans, sentences) or _inside_span(found, spans):
                    entities.append(found)  # a fragment of a longer name is dropped below
                else:
                    result.dropped.append(name)
            elif found[:1].islower() and _mentions(found, sentences, case=False) >= 2:
                concepts.append(found)
            else:
                result.dropped.append(name)
    aliases = _aliases(spans, sentences)
    entities = [e for e in dict.fromkeys(entities) if e not in aliases or e in linked]
    entities = _whole_names(entities, spans, set(linked))
    for alias, name in aliases.items():
        if name in entities and alias not in entities:
            result.aliases.setdefault(name, []).append(alias)
    entity_keys = {e.lower() for e in entities}
    concepts = [c for c in dict.fromkeys(concepts) if c.lower() not in entity_keys]
    concepts = [c for c in concepts if not any(c.lower() in e for e in entity_keys)]
    order = {name: _first_mention(name, sentences) for name in [*entities, *concepts]}
    by_weight = sorted(entities, key=lambda n: (n not in linked, -_mentions(n, sentences, case=True), order[n]))
    result.entities = by_weight[:max_entities]
    by_weight = sorted(concepts, key=lambda n: (n not in linked, -_mentions(n, sentences, case=False), order[n]))
    result.concepts = _dedupe_case(by_weight)[:max_concepts]
    return result


def mentioning(forms: Sequence[str], sentences: Sequence[SourceSentence]) -> list[SourceSentence]:
    """The sentences that name any of `forms` in their text or link to it (a capitalised name by its case)."""
    patterns = [_pattern(form, case=form[:1].isupper()) for form in forms if form]
    keys = {" ".join(form.split()).lower() for form in forms}
    found = []
    for sentence in sentences:
        linked = {" ".join(link_target_name(link.target).split()).lower() for link in sentence.links}
        if linked & keys or any(p.search(sentence.plain) for p in patterns):
            found.append(sentence)
    return found


def _capitalised_spans(plain: str, index: int) -> list[_Span]:
    """Runs of capitalised words (joined by "of", "de", "van"... between two of them), leading articles off."""
    words = list(_WORD_RE.finditer(plain))
    spans: list[_Span] = []
    i = 0
    while i < len(words):
        if not _capital(words[i].group(0)):
            i += 1
            continue
        j = i
        while j + 1 < len(words) and _joined(plain, words[j], words[j + 1]):
            if _capital(words[j + 1].group(0)) and not words[j].group(0).endswith(("'s", "’s")):
                j += 1
                continue
            k = j + 1  # "of", "of the", "van der" between two capitalised words
            while k < len(words) and k - j <= 2 and words[k].group(0) in _CONNECTORS:
                k += 1
            if k == j + 1 or k == len(words) or not _capital(words[k].group(0)):
                break
            if not all(_joined(plain, words[m], words[m + 1]) for m in range(j, k)):
                break
            j = k
        first = i
        while first <= j and words[first].group(0).lower() in FUNCTION_WORDS | _ARTICLES:
            first += 1  # "The Harrow Telescope", "In Kobe": the name starts after the function word
        if first <= j:
            start, end = words[first].start(), words[j].end()
            if plain[start:end].endswith(("'s", "’s")):
                end -= 2  # "South America's"
            spans.append(_Span(plain[start:end], index, start, end, initial=i == 0 and first == 0))
        i = j + 1
    return spans


def _aliases(spans: list[_Span], sentences: Sequence[SourceSentence]) -> dict[str, str]:
    """Other names a source gives a name: "The Falkland Islands, commonly referred to as the Falklands"."""
    found: dict[str, str] = {}
    for a, b in itertools.pairwise(spans):
        if a.sentence == b.sentence and _ALIAS_GAP_RE.fullmatch(sentences[a.sentence].plain[a.end : b.start]):
            found.setdefault(b.text, a.text)
    return found


def _capital(word: str) -> bool:
    return word[:1].isupper() and not (len(word) == 1 and word == "I")


def _joined(text: str, a: re.Match[str], b: re.Match[str]) -> bool:
    """Whether only a space separates two words (a comma or full stop ends a name)."""
    return text[a.end() : b.start()] == " "


def _proper(name: str, spans: list[_Span], sentences: Sequence[SourceSentence]) -> bool:
    """Whether a capitalised run is a proper name: not a sentence's capitalised first word, a month, a demonym
    used as an adjective ("Japanese island"), or a word the source also writes in lower case."""
    words = name.split()
    if not _well_formed(name) or name.lower() in _NOT_NAMES or len(words) > MAX_NAME_WORDS:
        return False
    own = [s for s in spans if s.text == name]
    if len(words) == 1:
        if len(name) < 3 and not name.isupper():
            return False  # "Bi", "Mr"
        if any(ch.isdigit() for ch in name):
            return False  # a code or a formula ("CH3OH", "M25"), not a name
        if all(s.initial for s in own):
            return False
        if _mentions(name.lower(), sentences, case=True) > 0:
            return False  # "Observatory" beside "the observatory": a common noun
        if name.lower().endswith(_DEMONYM_ENDINGS) and all(_modifies(s, sentences) for s in own):
            return False
    return True


def _modifies(span: _Span, sentences: Sequence[SourceSentence]) -> bool:
    after = sentences[span.sentence].plain[span.end :].split()
    return bool(after) and after[0][:1].islower() and after[0].lower() not in FUNCTION_WORDS


def _inside_span(name: str, spans: list[_Span]) -> bool:
    return any(name in s.text and name != s.text for s in spans)


def _whole_names(names: list[str], spans: list[_Span], linked: set[str]) -> list[str]:
    """Drop fragments: a name whose every occurrence lies inside a longer name, or one word of a longer name."""
    kept = []
    for name in names:
        if name in linked:
            kept.append(name)
            continue
        longer = [n for n in names if n != name and len(n) > len(name) and _contains_words(n, name)]
        if not longer:
            kept.append(name)
            continue
        alone = [s for s in spans if s.text == name]
        if len(name.split()) > 1 and alone:
            kept.append(name)  # "Kestrel Valley" written on its own too: a place of its own
    return kept


def _contains_words(longer: str, name: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", longer) is not None


def _clean(raw: str) -> str:
    name = " ".join(raw.strip().strip("\"'`*[]#()").split())
    words = name.split()
    while words and words[0].lower() in _ARTICLES:
        words = words[1:]
    return " ".join(words) if len(name) <= 80 else ""


def _well_formed(name: str) -> bool:
    """At least one content word, first and last words not function words, every word two letters or more."""
    words = [w.lower() for w in name.split()]
    if not words or len(words) > MAX_NAME_WORDS or not re.search(r"[^\W\d_]{2}", name):
        return False
    blocked = FUNCTION_WORDS | NEGATORS | HEDGES | _ARTICLES
    if words[0] in blocked or words[-1] in blocked:
        return False
    return all(len(w) >= 2 or w.isdigit() for w in words)


def _pattern(name: str, case: bool) -> re.Pattern[str]:
    body = r"\s+".join(re.escape(part) for part in name.split())
    return re.compile(rf"(?<![\w-]){body}(?:s|es)?(?![\w-])", 0 if case else re.IGNORECASE)


def _mentions(name: str, sentences: Sequence[SourceSentence], case: bool) -> int:
    """How many sentences mention `name` (a plural "-s" or "-es" counts)."""
    pattern = _pattern(name, case)
    return sum(1 for s in sentences if pattern.search(s.plain))


def _first_mention(name: str, sentences: Sequence[SourceSentence]) -> int:
    pattern = _pattern(name, case=False)
    return next((i for i, s in enumerate(sentences) if pattern.search(s.plain)), len(sentences))


def _as_written(name: str, sentences: Sequence[SourceSentence]) -> str:
    """`name` spelled as the source spells it (the model may change the case), or "" when it is not there."""
    pattern = _pattern(name, case=False)
    found = [m.group(0) for s in sentences for m in pattern.finditer(s.plain)]
    if not found:
        return ""
    chosen = next((f for f in found if f.startswith(name)), found[0])
    return " ".join(chosen.split())[: len(name)]


def _dedupe_case(names: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for name in names:
        key = name.lower().rstrip("s")
        if key not in seen:
            seen.add(key)
            out.append(name)
    return out
