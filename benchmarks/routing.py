"""Routing ablation: which document's adapter a question goes to, by words, by meaning, and with general questions
left to the base model.

Dev data only (benchmarks/devdata.py): generated fictional documents and SQuAD dev paragraphs (documents of one
article, which share their words), each with the routing keys the ttt learner writes into its adapter's
manifest (its self-study questions and its document's words; no training needed to make them), and the dev
general-knowledge questions, which should go nowhere. Each arm routes every question with routing.KeyRouter at
the ask defaults (top 1, coverage 0.5): words only; words or a trained question at least `min_similarity` close
(cosine of the shipped MiniLM), ranked by the word score plus a weight times that cosine; and the same with the
bundled general prompts as a background (a question nearer to them than to an adapter's trained questions goes
nowhere), at several weights. Reported: the share
of questions routed to their own document, and the share of general questions routed anywhere (an adapter
applied to them can change their answer). Writes results/ablations/routing.json and ABLATIONS.md.

    nice -n 10 .venv/bin/python -m benchmarks.routing
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.common import row, write_ablation
from benchmarks.devdata import DevSet, dev_general, generated, squad_dev
from benchmarks.learners import head_commit
from loracle.bundled import general_prompts
from loracle.config import AskConfig
from loracle.learners.ttt.learner import routing_keys
from loracle.learners.ttt.selfstudy import study_questions
from loracle.model import load_model
from loracle.routing import MEANING_WEIGHT, KeyRouter
from loracle.runtime import configure_threads
from loracle.search.embedder import default_embedder


@dataclass(frozen=True)
class Arm:
    """One way of routing: words and meaning (`similarity`: none for words only), with or without the background."""

    similarity: float | None
    background: bool = False
    meaning_weight: float = MEANING_WEIGHT  # of the cosine beside the word score when ranking (0: words, then meaning)

    @property
    def name(self) -> str:
        name = "words only" if self.similarity is None else f"words or similarity >= {self.similarity}"
        name += ", general prompts as background" if self.background else ""
        return name + (f", meaning weight {self.meaning_weight}" if self.similarity is not None else "")


ARMS = (
    Arm(None),
    Arm(0.7),
    Arm(0.7, background=True),
    Arm(0.6, background=True),
    Arm(0.7, background=True, meaning_weight=0.0),
    Arm(0.7, background=True, meaning_weight=1.0),
    Arm(0.7, background=True, meaning_weight=4.0),
)


def owners(dev: DevSet, per_doc: int) -> list[str]:
    """The id of each question's document (the dev sets list `per_doc` questions per document, in order)."""
    return [dev.docs[i // per_doc].id for i in range(len(dev.questions))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=8, help="generated documents and SQuAD dev paragraphs each")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    configure_threads(args.threads)
    started = time.perf_counter()
    lm = load_model()
    corpora = {
        "generated dev": (generated("generated", "routing-dev", documents=args.documents, parts=2, per_doc=4), 4),
        "squad dev": (squad_dev("squad", documents=args.documents, per_doc=2), 2),
    }
    keys = {
        name: {doc.id: routing_keys(doc, list(study_questions(lm, doc))) for doc in dev.docs}
        for name, (dev, _) in corpora.items()
    }
    general = [q.question for q in dev_general()]
    embedder, ask = default_embedder(), AskConfig()
    arms: dict[str, Any] = {}
    for arm in ARMS:
        result: dict[str, Any] = {}
        for name, (dev, per_doc) in corpora.items():
            ids = list(keys[name])
            router = KeyRouter(
                [keys[name][i] for i in ids],
                embedder if arm.similarity is not None else None,
                general_prompts() if arm.background else (),
                meaning_weight=arm.meaning_weight,
            )

            def routed(
                question: str, router: KeyRouter = router, ids: list[str] = ids, at: Any = arm.similarity
            ) -> list:
                return [ids[m.index] for m in router.route(question, ask.route_top_k, ask.min_coverage, at)]

            own = [owner in routed(q.question) for q, owner in zip(dev.questions, owners(dev, per_doc), strict=True)]
            stray = [q for q in general if routed(q)]
            result[name] = {
                "own": sum(own) / len(own),
                "questions": len(own),
                "general_routed": len(stray) / len(general),
                "general_routed_questions": stray,
            }
        arms[arm.name] = result
    rows = [
        row(
            f"{arm}: {name} own document routed",
            round(result["own"], 3),
            "share",
            note=f"{result['questions']} questions; dev general questions routed {result['general_routed']:.2f}",
        )
        for arm, by_corpus in arms.items()
        for name, result in by_corpus.items()
    ]
    data = {
        "commit": head_commit(),
        "arms": arms,
        "general_questions": len(general),
        "documents": {name: len(k) for name, k in keys.items()},
        "keys_per_document": {name: {d: len(k) for d, k in by_doc.items()} for name, by_doc in keys.items()},
        "seconds": round(time.perf_counter() - started, 1),
        "ask_defaults": ask.model_dump(),
    }
    print(write_ablation("routing", rows, data))


if __name__ == "__main__":
    main()
