"""Scoring a reply against accepted answers: containment accuracy and SQuAD-style token F1."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """Lowercase, drop punctuation and articles, squeeze spaces (the SQuAD normalisation)."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def is_correct(reply: str, accepted: Sequence[str]) -> bool:
    """True when any accepted answer appears in the reply (case- and punctuation-insensitive)."""
    norm_reply = f" {normalize(reply)} "
    return any(f" {normalize(a)} " in norm_reply for a in accepted if normalize(a))


def token_f1(reply: str, accepted: Sequence[str]) -> float:
    """The best token-overlap F1 between the reply and any accepted answer."""
    reply_tokens = normalize(reply).split()
    best = 0.0
    for answer in accepted:
        answer_tokens = normalize(answer).split()
        common = Counter(reply_tokens) & Counter(answer_tokens)
        overlap = sum(common.values())
        if overlap == 0:
            continue
        precision, recall = overlap / len(reply_tokens), overlap / len(answer_tokens)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best
