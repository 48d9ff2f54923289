"""The wiki with the real embedded model: an ingest of the sample document, and a lint that judges a contradiction."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from loracle.config import Config
from loracle.kb import KBPaths
from loracle.llm import make_llm
from loracle.wiki import ingest, init_kb, lint
from loracle.wiki.extract import content_words
from loracle.wiki.links import LinkGraph
from loracle.wiki.pages import read_page

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).parents[1] / "data" / "lint_corpus"


def test_real_ingest_of_the_sample_document(tmp_path: Path, embedded_lm, sample_dir: Path) -> None:
    kb = init_kb(tmp_path / "kb")
    llm = make_llm(Config(), "writer", lm=embedded_lm)
    source = next(sample_dir.glob("*.md"))
    [result] = ingest(kb, [source], llm).results
    assert result.status == "added", result.error
    assert 2 <= result.llm_calls <= 3  # summary, names (+ one retry at most)
    text = source.read_text().lower()
    summary = read_page(kb.wiki / result.page)
    assert summary.frontmatter["type"] == "source" and summary.section("Summary").text
    vocabulary = set(content_words(text))
    summary_words = content_words(summary.section("Summary").text)
    assert sum(w in vocabulary for w in summary_words) / len(summary_words) >= 0.75  # grounded in the source
    for rel in result.pages:  # every entity or concept page is named by words of the source
        title = str(read_page(kb.wiki / rel).frontmatter["title"])
        assert " ".join(title.lower().split()) in " ".join(text.split()), title
    for path in kb.wiki.rglob("*.md"):
        yaml.safe_load(path.read_text().split("---\n")[1])  # valid YAML frontmatter everywhere
    resolved, total = LinkGraph(kb.wiki).link_counts()
    assert resolved == total
    report = lint(kb)
    assert not [f for f in report.findings if f.kind in ("broken_link", "missing_from_index")]


def test_real_model_lint_catches_the_planted_contradiction(tmp_path: Path, embedded_lm) -> None:
    """1987 vs 1991 is caught by the same-words-other-numbers rule; the other candidate pairs go to the real
    model, whose answers must come back as verdicts (or be refused cleanly), never crash the lint."""
    shutil.copytree(CORPUS, tmp_path / "kb")
    llm = make_llm(Config(), "fast", lm=embedded_lm)
    report = lint(KBPaths(tmp_path / "kb"), llm, max_pairs=2)
    assert report.pairs_judged == 2 and report.llm_calls >= 1  # the second pair is judged by the model
    contradictions = [" ".join(f.evidence) for f in report.findings if f.kind == "contradiction"]
    assert any("1987" in evidence and "1991" in evidence for evidence in contradictions)
