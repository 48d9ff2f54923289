import pytest
from benchmarks.context_squad_dev import SIGNIFICANCE, pooled_choice
from benchmarks.dev import Decoder, sign_test
from benchmarks.learners import SQUAD
from benchmarks.ttt_dev import BENCHMARK_SQUAD_QUESTIONS, squad_dev_all

from loracle.eval.general import READING_FILE, data_file, load_general
from loracle.eval.squad import load_squad, sample_questions
from loracle.model import LoadedModel
from tests.unit.test_learner_context import docs, learner


def test_dev_decoder_replies_as_the_context_learner_answers(tiny_lm: LoadedModel) -> None:
    """The dev scripts pick the context learner's settings from Decoder's replies, so they must be its replies."""
    biased_ctx, plain_ctx = learner(tiny_lm, logit_bias=3.0, top_k=2), learner(tiny_lm, logit_bias=0.0, top_k=2)
    for ctx in (biased_ctx, plain_ctx):
        ctx.learn(docs())
    biased, plain = Decoder(biased_ctx), Decoder(plain_ctx)
    questions = ("Corra River", "Who founded the observatory?")
    passages = {q: [h.text for h in biased_ctx.retrieve(q)] for q in questions}
    assert all(passages.values())
    assert any(biased(q, passages[q]) != plain(q, passages[q]) for q in questions)  # the bias shows
    assert [biased(q, passages[q]) for q in questions] == [biased_ctx.answer(q).text for q in questions]
    assert [plain(q, passages[q]) for q in questions] == [plain_ctx.answer(q).text for q in questions]
    assert biased("Corra River", []) == learner(tiny_lm, logit_bias=3.0).answer("Corra River").text  # nothing learned


def test_sign_test_counts_only_the_questions_where_the_two_differ() -> None:
    assert sign_test([True, True, False, False], [True, False, True, False]) == {"gained": 1, "lost": 1, "p": 0.75}
    assert sign_test([True] * 3, [True] * 3)["p"] == 1.0
    assert sign_test([True] * 5, [False] * 5)["p"] == 0.5**5  # five gains, no loss: the chance of that alone


def test_pooled_choice_moves_a_default_only_on_a_gain_beyond_chance() -> None:
    """The best pooled setting replaces the defaults only when the sign test says it is no accident."""
    settings = [{"top_k": k, "min_relative_score": 0.0, "order": "document"} for k in (1, 2)]
    generated = {
        "chosen": {"min_similarity": 0.5},
        "grid": [
            {"settings": settings[0], "by_gate": {"0.5": {"right": [True, True, False]}}},
            {"settings": settings[1], "by_gate": {"0.5": {"right": [True, False, False]}}},
        ],
    }

    def grid(here_best: list[bool], here_default: list[bool]) -> list[dict]:
        return [{"settings": settings[0], "right": here_best}, {"settings": settings[1], "right": here_default}]

    best, chosen, test = pooled_choice(grid([True, False], [False, False]), generated, settings[1])
    assert (best["settings"], chosen["settings"], test["gained"], test["lost"]) == (settings[0], settings[1], 2, 0)
    best, chosen, test = pooled_choice(grid([True] * 6, [False] * 6), generated, settings[1])
    assert chosen is best and best["pooled_right"] == [True, True, False] + [True] * 6 and test["p"] < SIGNIFICANCE


@pytest.mark.skipif(not SQUAD.is_file(), reason="shared SQuAD file not beside this checkout")
def test_squad_dev_all_leaves_out_every_paragraph_an_evaluation_reads() -> None:
    paragraphs = load_squad(SQUAD)
    asked = {d for item in sample_questions(paragraphs, BENCHMARK_SQUAD_QUESTIONS) for d in item.docs}
    pasted = {" ".join(r.context.split()) for r in load_general(data_file(READING_FILE), "reading")}
    dev = squad_dev_all(2)
    assert dev and all(len(questions) == 2 for _, questions in dev)
    assert not {doc.id for doc, _ in dev} & asked
    assert not {" ".join(doc.text.split()) for doc, _ in dev} & pasted
