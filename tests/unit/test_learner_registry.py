import pytest

from loracle.errors import LoracleError
from loracle.learners import LEARNER_NAMES, create_learner
from loracle.learners.base import Learner
from loracle.model.loader import LoadedModel


def test_context_and_ttt_are_registered_and_follow_the_interface(tiny_lm: LoadedModel) -> None:
    assert {"context", "ttt"} <= set(LEARNER_NAMES)
    for name in ("context", "ttt"):
        learner = create_learner(name, tiny_lm, **({"vectors": False} if name == "context" else {"mask_fraction": 0}))
        assert isinstance(learner, Learner)
        assert learner.name == name


def test_unknown_learner_is_one_line_naming_the_known_ones(tiny_lm: LoadedModel) -> None:
    with pytest.raises(LoracleError, match=r"unknown learner 'nope' \(known: .*context.*ttt"):
        create_learner("nope", tiny_lm)


def test_options_reach_the_learner(tiny_lm: LoadedModel) -> None:
    learner = create_learner("context", tiny_lm, top_k=7, vectors=False)
    assert learner.top_k == 7


def test_unknown_option_is_one_line_naming_the_learners_options(tiny_lm: LoadedModel) -> None:
    with pytest.raises(LoracleError, match=r"'context' has no option 'topk' \(its options: top_k, .*own_passage"):
        create_learner("context", tiny_lm, topk=2, vectors=False)
    with pytest.raises(LoracleError, match=r"kstore: unknown setting nope"):  # kstore checks its own **settings
        create_learner("kstore", tiny_lm, nope=1)
