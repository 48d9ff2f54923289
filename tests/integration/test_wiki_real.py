"""The wiki with the real embedded model: an ingest of the sample document, and a lint that judges a contradiction."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from loracle.config import Config
from loracle.kb import KBPaths
from loracle.llm import make_llm
from loracle.sources.sentences import split_sentences
from loracle.wiki import ingest, init_kb, lint
from loracle.wiki.extract import blank_frontmatter
from loracle.wiki.links import LinkGraph
from loracle.wiki.pages import read_page
from loracle.wiki.support import SupportChecker

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).parents[1] / "data" / "lint_corpus"


def test_real_ingest_of_the_sample_document(tmp_path: Path, embedded_lm, sample_dir: Path) -> None:
    kb = init_kb(tmp_path / "kb")
    llm = make_llm(Config(), "writer", lm=embedded_lm)
    source = next(sample_dir.glob("*.md"))
    [result] = ingest(kb, [source], llm).results
    assert result.status == "added", result.error
    assert 1 <= result.llm_calls <= 4  # names (+ one retry), shortenings of long summary sentences
    text = source.read_text().lower()
    summary = read_page(kb.wiki / result.page)
    assert summary.frontmatter["type"] == "source" and summary.section("Summary").text
    checker = SupportChecker(blank_frontmatter(source.read_text()))
    for sentence in split_sentences(summary.section("Summary").text):
        assert checker.check(sentence).supported, sentence  # made of the source's own sentences
    for rel in result.pages:  # every entity or concept page is named by words of the source
        title = str(read_page(kb.wiki / rel).frontmatter["title"])
        assert " ".join(title.lower().split()) in " ".join(text.split()), title
    for path in kb.wiki.rglob("*.md"):
        yaml.safe_load(path.read_text().split("---\n")[1])  # valid YAML frontmatter everywhere
    resolved, total = LinkGraph(kb.wiki).link_counts(by_alias=False)
    assert resolved == total  # by file name, as Obsidian resolves links
    report = lint(kb)
    assert not report.errors, report.errors


def test_real_model_lint_catches_the_planted_contradiction(tmp_path: Path, embedded_lm) -> None:
    """1987 vs 1991 is caught by the same-words-other-numbers rule; the other candidate pairs go to the real
    model, whose answers must come back as verdicts (or be refused cleanly), never crash the lint."""
    shutil.copytree(CORPUS, tmp_path / "kb")
    llm = make_llm(Config(), "fast", lm=embedded_lm)
    report = lint(KBPaths(tmp_path / "kb"), llm, max_pairs=2)
    assert report.pairs_judged == 2 and report.llm_calls >= 1  # the second pair is judged by the model
    contradictions = [" ".join(f.evidence) for f in report.findings if f.kind == "contradiction"]
    assert any("1987" in evidence and "1991" in evidence for evidence in contradictions)
