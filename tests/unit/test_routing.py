"""KeyRouter: word coverage gates and ranks; with an embedder, the nearest trained question also routes."""

from __future__ import annotations

import pytest

from loracle.routing import KeyRouter, key_vectors
from tests.concepts import ConceptEmbedder

KEYS = [
    ["Where does the feline sleep?", "cat basket kitchen sleeps"],  # about the cat
    ["What powers the automobile?", "car engine garage petrol"],  # about the car
]


def test_without_an_embedder_only_words_route() -> None:
    router = KeyRouter(KEYS)
    assert [m.index for m in router.route("Where does the cat sleep?", 1, 0.5)] == [0]
    assert router.route("What drives the vehicle?", 1, 0.5, min_similarity=0.5) == []  # no word in common


def test_a_question_close_in_meaning_routes_where_words_alone_do_not() -> None:
    router = KeyRouter(KEYS, ConceptEmbedder())
    matches = router.route("What powers the vehicle?", 1, 0.9, min_similarity=0.6)
    assert [m.index for m in matches] == [1]
    assert matches[0].coverage < 0.9 and matches[0].similarity >= 0.6
    assert router.route("What powers the vehicle?", 1, 0.9, min_similarity=None) == []  # similarity off


def test_a_question_about_neither_goes_nowhere() -> None:
    router = KeyRouter(KEYS, ConceptEmbedder())
    assert router.route("Who wrote the symphony in 1820?", 2, 0.5, min_similarity=0.6) == []


def test_where_words_and_meaning_disagree_a_close_meaning_outweighs_one_shared_word() -> None:
    keys = [
        ["Which kitten won the show?", "show prize judge ribbon water"],  # shares "water": a word match only
        ["Where does the river flow?", "river delta sea"],  # the question's meaning
    ]
    router = KeyRouter(keys, ConceptEmbedder())
    question = "Where does the stream water go?"
    words_only = [m.index for m in KeyRouter(keys).route(question, 2, 0.3)]
    both = [m.index for m in router.route(question, 2, 0.3, min_similarity=0.6)]
    assert words_only[0] == 0 and both[0] == 1
    by_words = KeyRouter(keys, ConceptEmbedder(), meaning_weight=0).route(question, 2, 0.3, min_similarity=0.6)
    assert [m.index for m in by_words] == [0, 1]  # meaning then only breaks ties


def test_key_vectors_embed_questions_not_word_lists_and_are_kept(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LORACLE_CACHE_DIR", str(tmp_path))
    embedder = ConceptEmbedder()
    keys = ["Where does the cat sleep?", " ".join(f"word{i}" for i in range(40))]
    first = key_vectors(embedder, keys)
    assert first.shape == (1, embedder.dim)
    calls = embedder.calls
    assert (key_vectors(embedder, keys) == first).all() and embedder.calls == calls  # kept, not embedded again


def test_a_question_nearer_the_background_than_any_key_goes_nowhere() -> None:
    keys = [["What is the capital of the Sorrel Islands?", "sorrel islands capital harbour port"]]
    background = ["What is the capital of Portugal?", "How many legs does a spider have?"]
    guarded = KeyRouter(keys, ConceptEmbedder(), background)
    general = "What is the capital of France?"  # shares "capital" with the document: words alone route it
    assert [m.index for m in KeyRouter(keys, ConceptEmbedder()).route(general, 1, 0.5, 0.7)] == [0]
    assert guarded.route(general, 1, 0.5, 0.7) == []
    own = guarded.route("What is the capital of the Sorrel Islands?", 1, 0.5, 0.7)
    assert [m.index for m in own] == [0]  # a question about the document still goes to it
    assert guarded.route(general, 1, 0.5, None)[0].index == 0  # the background needs meaning: off with words only
