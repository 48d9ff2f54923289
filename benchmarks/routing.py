"""Routing ablation: which document's adapter a question goes to, by words alone or by words and meaning.

Dev data only: the fictional corpus and the first 8 paragraphs of the SQuAD article (../shared/data), with
the routing keys the ttt learner writes into each adapter's manifest (its self-study questions and its
document's words; no training needed to make them), and the bundled general questions, which should go
nowhere. Each arm routes every question with routing.KeyRouter at the ask defaults (top 1, coverage 0.5):
words only, then words or a trained question at least `min_similarity` close (cosine of the shipped MiniLM),
ranked by both orders fused. Reported: the share of questions routed to their own document, and the share of
general questions routed anywhere (an adapter applied to them can change their answer). Writes
results/ablations/routing.json and ABLATIONS.md.

    nice -n 10 .venv/bin/python -m benchmarks.routing
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.adapters import load_corpus
from benchmarks.common import row, write_ablation
from benchmarks.learners import head_commit
from loracle.config import AskConfig
from loracle.eval.general import bundled_general
from loracle.learners.ttt.learner import routing_keys
from loracle.learners.ttt.selfstudy import study_questions
from loracle.model import load_model
from loracle.routing import KeyRouter
from loracle.runtime import configure_threads
from loracle.search.embedder import default_embedder

SIMILARITIES = (None, 0.6, 0.65, 0.7, 0.75)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad-docs", type=int, default=8, help="the first N SQuAD paragraphs")
    parser.add_argument("--general", type=int, default=200, help="general questions that should go nowhere")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    configure_threads(args.threads)
    started = time.perf_counter()
    lm = load_model()
    corpora = {"fictional": load_corpus("fictional", None, None), "squad": load_corpus("squad", args.squad_docs, None)}
    keys = {
        name: {doc_id: routing_keys(doc, list(study_questions(lm, doc))) for doc_id, doc in inputs.docs.items()}
        for name, inputs in corpora.items()
    }
    general = [item.question for item in bundled_general(exclude_contexts=set())][: args.general]
    embedder, ask = default_embedder(), AskConfig()
    arms: dict[str, Any] = {}
    for similarity in SIMILARITIES:
        arm: dict[str, Any] = {}
        for name, inputs in corpora.items():
            ids = list(keys[name])
            router = KeyRouter([keys[name][i] for i in ids], embedder if similarity is not None else None)

            def routed(question: str, router: KeyRouter = router, ids: list[str] = ids, at: Any = similarity) -> list:
                return [ids[m.index] for m in router.route(question, ask.route_top_k, ask.min_coverage, at)]

            own = [bool(set(routed(item.question)) & set(item.docs)) for item in inputs.items]
            stray = [bool(routed(question)) for question in general]
            arm[name] = {"own": sum(own) / len(own), "questions": len(own), "general_routed": sum(stray) / len(stray)}
        arms["words only" if similarity is None else f"words or similarity >= {similarity}"] = arm
    rows = [
        row(
            f"{arm}: {name} own document routed",
            round(result["own"], 3),
            "share",
            note=f"{result['questions']} questions; general questions routed {result['general_routed']:.2f}",
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
