"""Lint on the committed corpus with planted problems; link resolution the way Obsidian does it; query and --save."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from loracle.kb import KBPaths
from loracle.wiki import lint, query
from loracle.wiki.links import LinkGraph, find_links
from tests.unit.test_wiki_helpers import ScriptedWriter, scripted_llm

CORPUS = Path(__file__).parents[1] / "data" / "lint_corpus"


@pytest.fixture
def corpus(tmp_path: Path) -> KBPaths:
    shutil.copytree(CORPUS, tmp_path / "kb")
    return KBPaths(tmp_path / "kb")


def _judge(prompt: str) -> dict:
    """Says 'contradiction' only for the planted pair about who was the first director."""
    planted = "Oskar Tenby was the first director" in prompt and "Ilse Marrow was the first director" in prompt
    return {"contradiction": planted, "reason": "two different first directors"}


def test_lint_finds_the_planted_problems(corpus: KBPaths) -> None:
    report = lint(corpus, scripted_llm(verdict=_judge))
    kinds = {(f.kind, f.page) for f in report.findings}
    assert ("broken_link", "sources/visitor-guide-summary.md") in kinds
    assert any("lantern-festival" in f.message for f in report.findings if f.kind == "broken_link")
    assert ("orphan", "concepts/hydroelectric-power.md") in kinds
    assert ("missing_from_index", "entities/ilse-marow.md") in kinds
    duplicates = [set(f.evidence) for f in report.findings if f.kind == "duplicate"]
    assert {"entities/ilse-marow.md: Ilse Marow", "entities/ilse-marrow.md: Ilse Marrow"} in duplicates
    assert {
        "entities/harrow-telescope.md: Harrow Telescope",
        "entities/the-harrow-telescope.md: The Harrow Telescope",
    } in (duplicates)
    contradictions = {f.message: " ".join(f.evidence) for f in report.findings if f.kind == "contradiction"}
    assert len(contradictions) == 2
    numeric = contradictions[
        "raw/observatory-history.md and raw/visitor-guide.md disagree: the same statement "
        "with different numbers: 1987 vs 1991"
    ]
    assert "observatory-history.md:6" in numeric and "visitor-guide.md:6" in numeric  # found without the LLM
    judged = contradictions[
        "raw/observatory-history.md and raw/visitor-guide.md disagree: two different first directors"
    ]
    assert "Oskar Tenby" in judged and "`raw/visitor-guide.md:8`" in judged
    assert report.pairs_judged >= 2 and 1 <= report.llm_calls < report.pairs_judged
    assert report.to_json()["counts"]["contradiction"] == 2


def test_contradiction_between_dated_sources_is_reported_as_superseded(corpus: KBPaths) -> None:
    for name, date in (("observatory-history.md", "2001-01-01"), ("visitor-guide.md", "2024-05-01")):
        path = corpus.raw / name
        path.write_text(path.read_text().replace("---\n", f"---\ndate: {date}\n", 1))
    report = lint(corpus, scripted_llm(verdict=_judge))
    superseded = [f for f in report.findings if f.kind == "superseded"]
    assert len(superseded) == 2 and not [f for f in report.findings if f.kind == "contradiction"]
    for finding in superseded:
        assert finding.message.startswith("raw/observatory-history.md is superseded by the newer raw/visitor-guide.md")


def test_no_llm_means_no_contradiction_check(corpus: KBPaths) -> None:
    report = lint(corpus)
    assert report.llm_calls == 0 and "contradictions not checked" in report.notes[0]


def test_fix_repairs_links_by_name_and_the_index(corpus: KBPaths) -> None:
    report = lint(corpus, fix=True)
    fixed = {f.kind for f in report.findings if f.fixed}
    assert fixed == {"broken_link", "missing_from_index"}
    text = (corpus.wiki / "sources/visitor-guide-summary.md").read_text()
    assert "[[ilse-marrow|Ilse Marrow]]" in text and "[[lantern-festival|Lantern Festival]]" in text  # no page: kept
    after = lint(corpus)
    assert {f.kind for f in after.findings} == {"broken_link", "orphan", "duplicate"}
    assert "[[ilse-marow|Ilse Marow]]" in (corpus.wiki / "index.md").read_text()


def test_find_links_reads_obsidian_syntax_and_skips_code() -> None:
    text = (
        "See [[Page]], [[Page|label]], [[Page#Heading]], ![[image.png]] and [[#Local]].\n"
        "| [[Table row\\|label]] |\n"
        "`[[not a link]]`\n"
        "```\n[[also not]]\n```\n"
    )
    links = find_links(text)
    assert [(lk.target, lk.heading, lk.label, lk.embed) for lk in links] == [
        ("Page", "", "", False),
        ("Page", "", "label", False),
        ("Page", "Heading", "", False),
        ("image.png", "", "", True),
        ("", "Local", "", False),
        ("Table row", "", "label", False),
    ]
    assert [lk.line for lk in links] == [1, 1, 1, 1, 1, 2]


def test_link_resolution_follows_obsidian(tmp_path: Path) -> None:
    (tmp_path / "Notes" / "Deep").mkdir(parents=True)
    (tmp_path / "Notes" / "Deep" / "Some Page.md").write_text("---\naliases: [Nickname]\n---\n# Some Page\n## Part\n")
    (tmp_path / "Attachments").mkdir()
    (tmp_path / "Attachments" / "diagram.png").write_bytes(b"png")
    (tmp_path / "index.md").write_text(
        "[[some page]] [[Deep/Some Page]] [[Some Page.md]] [[Nickname]] ![[diagram.png]] [[Some Page#part]]"
        " [[Missing]] [[Some Page#Nope]]"
    )
    graph = LinkGraph(tmp_path)
    assert graph.link_counts() == (7, 8)
    assert graph.resolve("SOME PAGE") == "Notes/Deep/Some Page.md"
    findings = lint_findings(tmp_path)
    assert ("broken_link", "[[Missing]] points at no page") in findings
    assert any(kind == "broken_heading" and "Nope" in message for kind, message in findings)
    assert not any("part" in message for _, message in findings)


def lint_findings(wiki: Path) -> set[tuple[str, str]]:
    from loracle.wiki.lint import check_links

    return {(f.kind, f.message) for f in check_links(LinkGraph(wiki))}


def test_query_cites_pages_and_raw_lines_and_saves(corpus: KBPaths) -> None:
    writer = ScriptedWriter(answer="It was founded by the astronomer Ilse Marrow.")
    llm = scripted_llm()
    llm.backend = writer
    answer = query(corpus, "Who founded the Kestrel Valley Observatory?", llm, n=3, save=True, mode="bm25")
    assert answer.text == "It was founded by the astronomer Ilse Marrow." and answer.llm_calls == 1
    assert "Wiki pages:" in writer.prompts[-1] and "Kestrel Valley Observatory" in writer.prompts[-1]
    cited_lines = [str(line) for cite in answer.citations for line in cite.lines]
    assert "raw/observatory-history.md:6" in cited_lines or "raw/visitor-guide.md:6" in cited_lines
    assert any(line.endswith(":6") and "founded" in line_text(corpus, line) for line in cited_lines)
    saved = corpus.wiki / answer.saved
    assert saved.parent.name == "answers" and "## Citations" in saved.read_text()
    assert f"[[{saved.stem}|" in (corpus.wiki / "index.md").read_text()
    assert "] query | Who founded the Kestrel Valley Observatory?" in (corpus.wiki / "log.md").read_text()
    # asked again after a person added keys to the answer page: theirs stay, first and as typed
    saved.write_text("---\nreviewed: yes  # by me\n" + saved.read_text().removeprefix("---\n"))
    again = query(corpus, "Who founded the Kestrel Valley Observatory?", llm, n=3, save=True, mode="bm25")
    assert again.saved == answer.saved and saved.read_text().startswith("---\nreviewed: yes  # by me\ntitle: ")


def line_text(kb: KBPaths, ref: str) -> str:
    path, number = ref.rsplit(":", 1)
    return (kb.root / path).read_text().splitlines()[int(number) - 1]
