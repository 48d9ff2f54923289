"""The registry: learner names to their configs and classes, options checked in one line before any model."""

import subprocess
import sys

import pytest

from loracle.errors import LoracleError
from loracle.learners import LEARNER_NAMES, create_learner, describe_options, learner_config
from loracle.model.loader import LoadedModel


def test_unknown_learner_is_one_line_naming_the_known_ones(tiny_lm: LoadedModel) -> None:
    with pytest.raises(
        LoracleError, match=r"unknown learner 'nope' \(known: context, ttt, hypernet, memory, kstore, playbook\)"
    ):
        create_learner("nope", tiny_lm)


def test_options_reach_the_learner_through_its_config(tiny_lm: LoadedModel) -> None:
    learner = create_learner("context", tiny_lm, {"top_k": 7, "vectors": False})
    assert learner.config.top_k == 7 and learner.config.vectors is False
    assert learner_config("ttt", {"lr": "0.5"}).lr == 0.5  # text from the command line is read as the field's type


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"topk": 2}, r"learner 'context' has no option 'topk' \(its options: top_k, split_questions, .*vectors\)$"),
        (
            {"top_k": 0},
            r"learner 'context': option top_k=0: Input should be greater than or equal to 1 \(its options: ",
        ),
        ({"order": "random"}, r"learner 'context': option order='random': Input should be 'relevance' or 'document'"),
    ],
)
def test_a_bad_option_is_one_line_naming_it_and_the_learners_options(options: dict, problem: str) -> None:
    with pytest.raises(LoracleError, match=problem) as caught:
        learner_config("context", options)
    assert "\n" not in str(caught.value)


def test_every_learner_describes_every_option() -> None:
    for name in LEARNER_NAMES:
        described = describe_options(name)
        assert described and all(key and description for key, _, description in described), name


def test_listing_and_checking_options_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from loracle.learners import LEARNER_NAMES, describe_options, learner_config\n"
        "for name in LEARNER_NAMES:\n"
        "    describe_options(name); learner_config(name, {})\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:3]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_loracle_learners_lists_each_option_with_its_default_and_what_it_does() -> None:
    from typer.testing import CliRunner

    from loracle.cli import app

    shown = CliRunner().invoke(app, ["learners", "ttt"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "steps_per_doc" in shown.output and "Adam steps per document" in shown.output
    assert "whiten_ridge" in shown.output and "0.1" in shown.output  # defaults as -o takes them
    unknown = CliRunner().invoke(app, ["learners", "nope"])  # `loracle` prints the error's one line
    assert isinstance(unknown.exception, LoracleError) and "unknown learner 'nope'" in str(unknown.exception)
