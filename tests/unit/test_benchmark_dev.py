from benchmarks.dev import Decoder

from loracle.model import LoadedModel
from tests.unit.test_learner_context import docs, learner


def test_dev_decoder_replies_as_the_context_learner_answers(tiny_lm: LoadedModel) -> None:
    """The dev scripts pick the context learner's settings from Decoder's replies, so they must be its replies."""
    ctx = learner(tiny_lm, logit_bias=3.0, top_k=2)
    ctx.learn(docs())
    biased = Decoder(tiny_lm, ctx.max_new_tokens, ctx.logit_bias)
    plain = Decoder(tiny_lm, ctx.max_new_tokens)
    questions = ("Corra River", "Who founded the observatory?")
    passages = {q: [h.text for h in ctx.retrieve(q)] for q in questions}
    assert all(passages.values())
    assert any(biased(q, passages[q]) != plain(q, passages[q]) for q in questions)  # the bias shows
    assert [biased(q, passages[q]) for q in questions] == [ctx.answer(q).text for q in questions]
    ctx.logit_bias = 0.0
    assert [plain(q, passages[q]) for q in questions] == [ctx.answer(q).text for q in questions]
    assert biased("Corra River", []) == learner(tiny_lm, logit_bias=3.0).answer("Corra River").text  # nothing learned
