"""Shorter sentences that still say only what the source says: deletions, never new words.

A shortened sentence is accepted only when it is the original with some words deleted, in order, and every
deleted stretch is one that cannot change what the rest claims: a whole parenthesis or comma-delimited part
(not a condition), or, inside one part, a modifier that ends on a content word and holds no word that bends
the claim (a negation, a hedge, an ordinal, a comparison, "only", "former"). The writer model may propose a
shortening; this check decides. `trim` makes the deletions that are always safe, with no model at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from loracle.llm import LLM
from loracle.wiki.sourcetext import plain_text
from loracle.wiki.words import FUNCTION_WORDS, HEDGES, NEGATORS, word_set

LONG_SENTENCE_WORDS = 25  # longer sentences are worth shortening
_PARENS_RE = re.compile(r"\s*(?<!\])\([^()]*\)|\s*\[(?:\d{1,3}|\^[^\[\]]*|citation needed)\]")
_PIECE_RE = re.compile(r"[^\W_]+(?:['’\-.][^\W_]+)*|[(),;:\u2013\u2014]", re.UNICODE)
_ORDINAL_RE = re.compile(r"\d+(?:st|nd|rd|th)")
_BOUNDARIES = frozenset("(),;:\u2013\u2014")
_ORDINALS = word_set(
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth last next previous"
)
_PINNED = (
    NEGATORS
    | HEDGES
    | _ORDINALS
    | word_set(
        "only former vice co than more less most least fewer nearly almost about approximately around roughly "
        "some several many few all every each any except unless if once formerly later earlier still also"
    )
)
_CONDITIONS = word_set("if unless provided assuming except")
_COORDINATORS = word_set("and or but nor")
#: words that open a part of a sentence which can go without taking the subject with it ("In 1999, ...")
_OPENERS = word_set("in on at during after before since by from for with although though while when")

SHORTEN_PROMPT = "Sentence: {sentence}\n\nShorten the sentence by deleting words. Keep its facts. Do not add words."


@dataclass(frozen=True)
class _Word:
    text: str
    part: int  # which comma- or parenthesis-delimited part of the sentence it is in


def trim(sentence: str) -> str:
    """The sentence without parentheses and bracketed references: deletions that never change a claim."""
    trimmed = " ".join(_PARENS_RE.sub("", sentence).split())
    trimmed = re.sub(r"\s+([,.;:!?])", r"\1", trimmed)
    return trimmed if len(trimmed.split()) >= 4 else sentence


def shortening_problem(original: str, short: str) -> str:
    """Why `short` is not a safe shortening of `original` ("" when it is one)."""
    words = _words(plain_text(original))
    kept = [w.lower() for w in _word_texts(plain_text(short))]
    if not kept:
        return "empty"
    matched = _align(words, kept)
    if matched is None:
        return "adds, changes or reorders words"
    deleted_runs = _runs([i for i in range(len(words)) if i not in matched])
    for run in deleted_runs:
        problem = _run_problem(words, run, matched)
        if problem:
            return problem
    return ""


def _words(text: str) -> list[_Word]:
    part, out = 0, []
    for piece in _PIECE_RE.findall(text):
        if piece in _BOUNDARIES:
            part += 1
        else:
            out.append(_Word(piece, part))
    return out


def _word_texts(text: str) -> list[str]:
    return [p for p in _PIECE_RE.findall(text) if p not in _BOUNDARIES]


def _align(words: list[_Word], kept: list[str]) -> set[int] | None:
    """Indexes of `words` that `kept` keeps, matched left to right; None when `kept` is no subsequence."""
    matched: set[int] = set()
    position = 0
    for item in kept:
        while position < len(words) and words[position].text.lower() != item:
            position += 1
        if position == len(words):
            return None
        matched.add(position)
        position += 1
    return matched


def _runs(indexes: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for index in indexes:
        if runs and runs[-1][-1] == index - 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return runs


def _run_problem(words: list[_Word], run: list[int], matched: set[int]) -> str:
    texts = [words[i].text.lower() for i in run]
    parts = {words[i].part for i in run}
    whole = all(words[i].part not in parts or i in run for i in range(len(words)))
    trailing = run[-1] == len(words) - 1 and texts[0] in _COORDINATORS
    if whole or trailing:  # a whole part, or "and ..." to the end: what is left is still claimed
        hedged = sorted(set(texts) & (HEDGES | _CONDITIONS))
        if hedged:
            return f"deletes {hedged[0]!r}"
        if whole and 0 in parts and texts[0] not in _OPENERS:
            return "deletes the opening part (the subject, perhaps)"
        return ""
    pinned = [t for t in texts if _pinned(t)]
    if pinned:
        return f"deletes {pinned[0]!r}"
    if len(parts) > 1:
        return "deletes across a comma or parenthesis"
    if texts[-1] in FUNCTION_WORDS:
        return f"deletes words ending on {texts[-1]!r}, which would attach what follows elsewhere"
    if set(texts) & _COORDINATORS:
        part = words[run[0]].part
        last_of_part = max(i for i, w in enumerate(words) if w.part == part)
        if texts[0] not in _COORDINATORS or run[-1] != last_of_part:
            return "deletes part of a coordination"
    before, after = run[0] - 1, run[-1] + 1
    if before in matched and _capitalised(words[before]) and _capitalised(words[run[0]]):
        return "cuts a name"
    if after in matched and _capitalised(words[after]) and _capitalised(words[run[-1]]):
        return "cuts a name"
    return ""


def _pinned(word: str) -> bool:
    """A word whose deletion bends what is left: "not", "only", "first", "19th", "seventh-largest"."""
    parts = word.split("-")
    return any(p in _PINNED or _ORDINAL_RE.fullmatch(p) or (len(p) >= 6 and p.endswith("est")) for p in parts)


def _capitalised(word: _Word) -> bool:
    return word.text[:1].isupper()


def propose_shorter(llm: LLM, sentence: str, max_tokens: int = 64) -> str:
    """The writer's shorter version of `sentence` (first line of its answer), unchecked."""
    answer = llm.complete(
        [
            {"role": "system", "content": "You shorten sentences without changing their meaning."},
            {"role": "user", "content": SHORTEN_PROMPT.format(sentence=plain_text(sentence))},
        ],
        max_tokens=max_tokens,
        stop=lambda text: "\n" in text.strip(),
    )
    line = (answer.strip().splitlines() or [""])[0].strip().strip("\"'“”")
    return " ".join(line.split())


def accept_shorter(original: str, short: str, min_words: int = 5, max_share: float = 0.85) -> str:
    """`short`, tidied, when it is a safe shortening that saves words; else ""."""
    short = short.strip()
    if not short:
        return ""
    short = short[0].upper() + short[1:]
    if short[-1] not in ".!?":
        short += "."
    count, original_count = len(_word_texts(short)), len(_word_texts(plain_text(original)))
    if count < min_words or count > max_share * original_count:
        return ""
    return "" if shortening_problem(original, short) else short
