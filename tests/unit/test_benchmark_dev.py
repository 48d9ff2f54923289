from benchmarks.dev import Decoder

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
