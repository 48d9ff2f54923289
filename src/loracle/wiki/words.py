"""Words as the wiki's checks see them: tokens, function words, polarity words, numbers and stems.

Function words carry no claim of their own ("the", "of", "was"), so a check of support ignores them; words
that flip or weaken a claim ("not", "may") are kept apart, since a sentence that adds or drops one says
something else. Stems (Snowball's English stemmer) let "retired" match "retire" but not "director" match
"directed".
"""

from __future__ import annotations

import re
from functools import lru_cache

import snowballstemmer


def word_set(text: str) -> frozenset[str]:
    """The white-space separated words of `text` as a set (word lists read better as one string)."""
    return frozenset(text.split())


_TOKEN_RE = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+(?:['’][^\W\d_]+)?", re.UNICODE)

FUNCTION_WORDS = word_set("""
    a an the this that these those some any each every either such own same other another
    i me my mine we us our ours you your yours he him his she her hers it its they them their theirs
    one's oneself itself himself herself themselves ourselves yourself yourselves
    who whom whose which what whatever whichever whoever when where why how whether
    is am are was were be been being has have had having do does did doing done
    shall will would should must can
    of in on at to for with by from as into onto upon about over under between among through within
    across along around near toward towards via per off out up down against beside besides beyond
    and or but so yet both also too then than there here thus hence therefore however
    if because while whereas though although unless once
    very just quite rather really even ever
    s 's
    """)
NEGATORS = word_set("not no never none nor neither nobody nothing nowhere without cannot n't")
HEDGES = word_set(
    "may might could perhaps possibly probably reportedly allegedly likely unlikely apparently supposedly"
)
NUMBER_WORDS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "twenty": "20",
    "hundred": "100",
    "thousand": "1000",
}

_stemmer = snowballstemmer.stemmer("english")


def tokens(text: str) -> list[str]:
    """Lowercased word and number tokens; "don't" is "do" + "n't", "1,200" is "1200"."""
    out: list[str] = []
    for match in _TOKEN_RE.finditer(text.replace("’", "'")):
        token = match.group(0).lower()
        if token[0].isdigit():
            out.append(token.replace(",", ""))
        elif token.endswith("n't"):
            out.extend((token[:-3] or "not", "n't"))
        elif token.endswith("'s"):
            out.append(token[:-2])
        else:
            out.append(token)
    return out


def is_number(token: str) -> bool:
    return token[:1].isdigit()


@lru_cache(maxsize=65536)
def stem(token: str) -> str:
    """The token's Snowball stem; numbers and number words become digits."""
    if is_number(token):
        return token
    if token in NUMBER_WORDS:
        return NUMBER_WORDS[token]
    return _stemmer.stemWord(token)


def is_function_word(token: str) -> bool:
    return token in FUNCTION_WORDS or (len(token) == 1 and not token.isdigit())


def content_stems(text: str) -> set[str]:
    """The stems of the words that carry content: function and polarity words left out."""
    return {stem(t) for t in tokens(text) if not is_function_word(t) and t not in NEGATORS and t not in HEDGES}


def polarity(text: str) -> frozenset[str]:
    """Which of "negated" and "hedged" the text is (a sentence that adds or drops either says something else)."""
    found = set(tokens(text))
    kinds = set()
    if found & NEGATORS:
        kinds.add("negated")
    if found & HEDGES:
        kinds.add("hedged")
    return frozenset(kinds)
