"""The offline support check and the shortening check: what each accepts, what each refuses, and why."""

from __future__ import annotations

import pytest

from loracle.wiki.shorten import accept_shorter, shortening_problem, trim
from loracle.wiki.support import SupportChecker

SOURCE = """# Harlow Institute

The Harlow Institute is a research institute in Denmere, founded in 1952 by the chemist Arvid Solberg.

Mara Quist worked at the institute as a senior chemist from 1978 until she retired in 2011.
She never directed the institute.
The institute employs about 140 people and runs two research vessels.
Its director may move the institute to Stroud.
"""


@pytest.fixture(scope="module")
def checker() -> SupportChecker:
    return SupportChecker(SOURCE)


@pytest.mark.parametrize(
    "sentence",
    [
        "The Harlow Institute is a research institute in Denmere.",  # a deletion
        "Mara Quist retired in 2011.",  # two parts of one sentence
        "Arvid Solberg, a chemist, founded the Harlow Institute in 1952.",  # reordered, same words
        "Mara Quist worked at the institute until 2011. She never directed it.",  # two adjacent sentences
        "The institute runs 2 research vessels.",  # "two" and "2" are one number
        "Mara Quist, a senior chemist, retires.",  # a stem: "retires" is "retired"
    ],
)
def test_supported(checker: SupportChecker, sentence: str) -> None:
    assert checker.check(sentence).supported, checker.check(sentence)


@pytest.mark.parametrize(
    ("sentence", "reason"),
    [
        ("Mara Quist directed the institute.", "the source is negated"),  # "never" dropped
        ("Mara Quist is still a senior chemist at the institute.", "still"),  # the invented "still"
        ("Mara Quist was the director of the institute.", "director"),  # "directed" is not "director"
        ("The institute was founded in 1953.", "1953"),  # a number changed
        ("The institute employs about 140 people in Northern California.", "california"),
        ("Mara Quist did not work at the institute.", "the source is not negated"),  # a negation added
        ("Its director will move the institute to Stroud.", "hedged"),  # a hedge dropped
        ("The Harlow Institute is in Denmere. Arvid Solberg runs two research vessels.", "vessel"),  # too far apart
    ],
)
def test_unsupported(checker: SupportChecker, sentence: str, reason: str) -> None:
    support = checker.check(sentence)
    assert not support.supported
    assert reason in support.reason or reason in support.missing, support


def test_support_names_the_lines_that_back_a_sentence(checker: SupportChecker) -> None:
    assert checker.check("Mara Quist retired in 2011.").lines == (5,)
    assert checker.check("Mara Quist worked at the institute until 2011. She never directed it.").lines == (5, 6)


@pytest.mark.parametrize(
    ("short", "problem"),
    [
        ("The Harlow Institute is a research institute in Denmere.", ""),  # a whole trailing part
        ("The Harlow Institute is a research institute founded in 1952 by Arvid Solberg.", ""),  # a modifier
        ("The Harlow Institute is a research institute founded in 1952.", ""),
        ("The Harlow Institute is a research institute in 1952 by the chemist Arvid Solberg.", "across a comma"),
        ("The Harlow Institute is a Solberg.", "across a comma"),
        ("The Harlow Institute is a research institute in Denmere, founded by the chemist Solberg.", "cuts a name"),
        ("The Harlow Institute is a research institute in Denmere, founded in the chemist Arvid Solberg.", "on 'by'"),
        ("The Harlow Institute is a research institute in Denmere, founded in 1952 by Arvid.", "cuts a name"),
        ("The Denmere Institute is a research institute.", "adds, changes or reorders"),
    ],
)
def test_shortening_only_by_deletions_that_keep_every_claim(short: str, problem: str) -> None:
    original = "The Harlow Institute is a research institute in Denmere, founded in 1952 by the chemist Arvid Solberg."
    assert problem in shortening_problem(original, short) if problem else shortening_problem(original, short) == ""


@pytest.mark.parametrize(
    ("original", "short", "problem"),
    [
        ("She was the second director of the institute.", "She was the director of the institute.", "'second'"),
        ("Kobe is Japan's seventh-largest city.", "Kobe is Japan's city.", "'seventh-largest'"),
        ("The ferry does not run on Christmas Day.", "The ferry does run on Christmas Day.", "'not'"),
        ("If the river floods, the ferry stops.", "The ferry stops.", "'if'"),
        ("It was built in 1934, reportedly by a navy yard.", "It was built in 1934.", "'reportedly'"),
        ("He was born in Amble and died in Stroud.", "He was born in Stroud.", "ending on 'in'"),
        ("He was born in Amble and died in Stroud.", "He was born in Amble.", ""),  # "and ..." to the end
        ("In 1999, its staff found a comet.", "Its staff found a comet.", ""),  # an opening adverbial
        ("The second director, Oskar Tenby, moved the archive.", "Oskar Tenby, moved the archive.", "opening part"),
    ],
)
def test_words_that_bend_a_claim_are_never_deleted(original: str, short: str, problem: str) -> None:
    found = shortening_problem(original, short)
    assert (problem in found) if problem else found == ""


def test_accepted_shortenings_save_words_and_read_as_sentences() -> None:
    original = "The ferry, which was built in 1934 by the county, carries twelve cars at a time across the river."
    assert accept_shorter(original, "the ferry carries twelve cars at a time across the river") == (
        "The ferry carries twelve cars at a time across the river."
    )
    assert accept_shorter(original, original) == ""  # saves nothing
    assert accept_shorter(original, "The ferry carries.") == ""  # too short to say anything


def test_trim_drops_parentheses_and_references_but_keeps_links() -> None:
    assert trim("Cast iron (from Latin) is an alloy[1] of [[iron]] and [carbon](https://x.org/c).") == (
        "Cast iron is an alloy of [[iron]] and [carbon](https://x.org/c)."
    )
