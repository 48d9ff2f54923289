"""The bake benchmark's task checks decide as they say (they score every reply of the benchmark)."""

import pytest
from benchmarks.bake import RULES, VARIANTS, language, one_sentence

from loracle.bake.config import bake_config


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("La vitesse de la lumière est de 300 000 km par seconde.", "fr"),
        ("Albert Einstein est un physicien qui a changé la science.", "fr"),
        ("El cambio de la vida es el proceso para todos.", "es"),
        ("The speed of light is approximately 300,000 km per second.", "en"),
        ("Bonjour! I'm just a little bit off today, and the weather is bad.", "en"),
        ("42", ""),
    ],
)
def test_language_is_the_one_whose_stopwords_the_text_holds_most(text: str, lang: str) -> None:
    assert language(text) == lang


@pytest.mark.parametrize(
    ("text", "one"),
    [
        ("Mount Kilimanjaro is a mountain in Tanzania, Africa.", True),
        ("It is about 3.4 km high, e.g. quite tall!", True),
        ("The opposite of ancient is modern. It means new.", False),
        ("Regular exercise offers numerous benefits, including improved", False),  # cut off, unfinished
        ("", False),
    ],
)
def test_one_sentence_means_one_finished_sentence(text: str, one: bool) -> None:
    assert one_sentence(text) is one


def test_every_rule_and_variant_is_a_valid_bake() -> None:
    for instruction in RULES:
        for variant in VARIANTS.values():
            bake_config(instruction, variant)
