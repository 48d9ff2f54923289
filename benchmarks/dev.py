"""Helpers shared by the dev-data scripts (kstore_dev, context_dev, ttt_dev): generated documents and the
questions asked of them, and the arithmetic of a relevance gate scored without decoding again."""

from __future__ import annotations

import argparse
import inspect
import itertools
import math
import random
import re
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.common import discordant, row
from loracle.eval.general import KNOWLEDGE_FILE, data_file, load_general
from loracle.learners.context.learner import ContextLearner
from loracle.learners.hypernet.data import Sample, fictional_sample
from loracle.model import LoadedModel, load_model
from loracle.runtime import configure_threads

ORDERS = ("relevance", "document")


def dev_model() -> LoadedModel:
    """The embedded model on as many threads as --threads asks (2), for a dev script with no other argument."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    configure_threads(parser.parse_args().threads)
    return load_model("embedded")


def apply_settings(learner: object, settings: Mapping[str, Any]) -> None:
    """Set each of `settings` (option name -> value) on `learner`, as a dev script switches between arms."""
    for key, value in settings.items():
        setattr(learner, key, value)


def title_of(text: str) -> str:
    """The entity a generated document is about (its first words up to "is"/"was")."""
    return re.split(r" (?:is|was) ", text, maxsplit=1)[0].removeprefix("The ")


def dev_samples(seed: str, kind: str, count: int, parts: int = 1) -> list[Sample]:
    """`count` generated documents of `parts` paragraphs, seeded "<seed>/<kind>/<i>"."""
    return [fictional_sample(random.Random(f"{seed}/{kind}/{i}"), parts=parts) for i in range(count)]


def unrelated_questions(seed: str, docs: int, per_doc: int, pick: random.Random, parts: int = 1) -> list[str]:
    """Questions about generated documents that are never learned (the "unlearned" kind), drawn with `pick`."""
    return [q for s in dev_samples(seed, "unlearned", docs, parts) for q, _ in pick.sample(s.qa, per_doc)]


def general_questions() -> list[str]:
    """The bundled general-knowledge questions (reported beside a gate, never used to choose it)."""
    return [item.question for item in load_general(data_file(KNOWLEDGE_FILE), "knowledge")]


def ceil3(x: float) -> float:
    return math.ceil(x * 1000) / 1000


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def gated_scores(config: list[dict], base: list[dict], scores: list[float], gate: float) -> dict[str, Any]:
    """Accuracy, mean F1 and each question's correctness ("right") when questions scoring below `gate` get the
    base model's reply."""
    picked = [c if s >= gate else b for c, b, s in zip(config, base, scores, strict=True)]
    return {
        "accuracy": statistics.mean(p["correct"] for p in picked),
        "f1": statistics.mean(p["f1"] for p in picked),
        "right": [p["correct"] for p in picked],
    }


def sign_test(challenger: list[bool], incumbent: list[bool]) -> dict[str, Any]:
    """Whether `challenger` is right more often than `incumbent` on the same questions beyond chance: the
    questions only it gets right ("gained"), those only the incumbent gets right ("lost"), and the one-sided
    exact binomial p of at least that many gains among them (1.0 when they never differ)."""
    from scipy.stats import binomtest

    gained, lost = discordant(challenger, incumbent)
    p = binomtest(gained, gained + lost, 0.5, alternative="greater").pvalue if gained + lost else 1.0
    return {"gained": gained, "lost": lost, "p": float(p)}


def pass_rate(scores: list[float], gate: float) -> float:
    """The share of `scores` at or above `gate`."""
    return sum(s >= gate for s in scores) / len(scores)


def gate_rows(scores: dict[str, list[float]], gate: float, unrelated_docs: int) -> list[dict]:
    """RESULTS rows: the share of learned, unrelated and general questions whose score passes `gate`."""
    return [
        row("learned questions passing the gate", pass_rate(scores["learned"], gate)),
        row("unrelated questions passing the gate", pass_rate(scores["unrelated"], gate),
            note=f"{len(scores['unrelated'])} questions about {unrelated_docs} unlearned generated documents"),
        row("general-knowledge questions passing the gate", pass_rate(scores["general"], gate),
            note=f"{len(scores['general'])} questions; reported only, not used to choose"),
    ]  # fmt: skip


def retrieval_grid() -> list[dict[str, Any]]:
    """The context learner's retrieval settings that the dev benchmarks try (top_k x min_relative_score x order
    x require_new_terms), the settings without require_new_terms first so that they win ties; all with
    `split_questions` off, which would set the hits by itself (context_split_dev compares it), and then the
    learner's own defaults when they are not among them (so a dev script always scores the incumbent; last, so
    that it wins no tie)."""
    grid = []
    for new_terms, top_k, min_relative, order in itertools.product((False, True), (1, 2, 3), (0.0, 0.5, 0.75), ORDERS):
        if top_k == 1 and (min_relative or order != ORDERS[0] or new_terms):
            continue  # one hit: neither the cut-off, the order nor the new-terms rule changes anything
        grid.append(
            {
                "top_k": top_k,
                "min_relative_score": min_relative,
                "order": order,
                "require_new_terms": new_terms,
                "split_questions": False,
            }
        )
    defaults = {key: inspect.signature(ContextLearner).parameters[key].default for key in grid[0]}
    return grid if defaults in grid else [*grid, defaults]


class Decoder:
    """The context learner's replies (`ContextLearner.reply`), one decode per distinct (question, passages):
    retrieval settings that give a question the same passages share it."""

    def __init__(self, learner: ContextLearner) -> None:
        self.learner = learner
        self.cache: dict[tuple[str, tuple[str, ...]], str] = {}

    def __call__(self, question: str, passages: Sequence[str]) -> str:
        """The reply to `question` with `passages` in context (closed-book when there are none)."""
        key = (question, tuple(passages))
        if key not in self.cache:
            self.cache[key] = self.learner.reply(question, passages)
        return self.cache[key]
