"""How well ttt's routing keys send a question to its own document's adapter, on the SQuAD dev split.

Routing needs no training, so this only writes each paragraph's self-study cues (question writing) and
scores kinds of key against the paragraph's questions: the cues alone, the keys the learner uses (cues +
the paragraph's distinct words, learners.ttt.routing_keys) and the full text, by word overlap
(routing.ChunkRouter); the full text by MiniLM sentence embeddings (cosine); and the learner's keys fused
with the embeddings (search.fusion, the wiki search's hybrid).
Paragraphs are those benchmarks/ttt_dev.py draws with --source squad: never the benchmark's own.

    nice -n 5 .venv/bin/python -m benchmarks.ttt_routing_dev --docs 30
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.common import row, write_result
from benchmarks.ttt_dev import squad_dev
from loracle.learners.routing import ChunkRouter, best_first
from loracle.learners.ttt.learner import routing_keys
from loracle.learners.ttt.selfstudy import study_examples
from loracle.model import load_model
from loracle.runtime import configure_threads
from loracle.search import default_embedder
from loracle.search.fusion import Ranked, fuse


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=30)
    parser.add_argument("--per-doc", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    configure_threads(args.threads)
    lm = load_model("embedded")
    dev = squad_dev(args.docs, args.per_doc)
    start = time.perf_counter()
    studied = [study_examples(lm, doc) for doc, _ in dev]
    study_s = (time.perf_counter() - start) / len(dev)
    learned = [routing_keys(doc, examples) for (doc, _), examples in zip(dev, studied, strict=True)]
    lexical = {
        "cues alone": [" ".join(keys[:-1]) for keys in learned],
        "cues + distinct words (the learner's keys)": [" ".join(keys) for keys in learned],
        "full text": [doc.text for doc, _ in dev],
    }
    asked = [(i, question) for i, (_, questions) in enumerate(dev) for question, _ in questions]
    routers = {kind: ChunkRouter(texts) for kind, texts in lexical.items()}
    scores = {kind: [router.scores(q) for _, q in asked] for kind, router in routers.items()}
    embedder = default_embedder()
    doc_vectors = embedder.encode([doc.text for doc, _ in dev])
    question_vectors = embedder.encode([q for _, q in asked])
    scores["full text, MiniLM cosine"] = (question_vectors @ doc_vectors.T).tolist()
    scores["learner's keys fused with MiniLM cosine (zscore)"] = [
        fused_scores(words, cosines)
        for words, cosines in zip(
            scores["cues + distinct words (the learner's keys)"], scores["full text, MiniLM cosine"], strict=True
        )
    ]
    rows, data = [], {"docs": args.docs, "per_doc": args.per_doc, "study_seconds_per_doc": study_s, "kinds": {}}
    for kind, per_question in scores.items():
        orders = [best_first(s) for s in per_question]
        top1 = statistics.mean(order[0] == i for order, (i, _) in zip(orders, asked, strict=True))
        top2 = statistics.mean(i in order[:2] for order, (i, _) in zip(orders, asked, strict=True))
        data["kinds"][kind] = {"top1": top1, "top2": top2}
        note = f"{len(asked)} questions about {len(dev)} SQuAD dev paragraphs"
        rows.append(row(f"{kind}: own paragraph routed first / in the top 2", f"{top1:.2f} / {top2:.2f}", note=note))
    rows.append(row("self-study question writing per paragraph", round(study_s, 2), "s"))
    write_result("ttt_routing_dev", rows, data)


def fused_scores(word_scores: list[float], cosines: list[float]) -> list[float]:
    """Per paragraph, the hybrid score of word overlap and cosine (higher is better)."""

    def ranked(values: list[float]) -> list[Ranked]:
        return [Ranked(j, values[j], rank) for rank, j in enumerate(best_first(values), start=1) if values[j] > 0]

    fused = {f.key: f.score for f in fuse(ranked(word_scores), ranked(cosines))}
    return [fused.get(j, 0.0) for j in range(len(word_scores))]


if __name__ == "__main__":
    main()
