"""Ingest with a scripted writer: pages, links both ways, index and log, merges that keep hand edits, safety."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
import yaml

from loracle.kb import KBPaths
from loracle.wiki import ingest, init_kb, lint, wiki_status
from loracle.wiki.layout import INDEX_TEMPLATE
from loracle.wiki.links import LinkGraph
from loracle.wiki.pages import read_page
from loracle.wiki.state import load_state, save_state
from tests.unit.test_wiki_helpers import scripted_endpoint, scripted_llm

OBSERVATORY = """---
title: Kestrel Valley Observatory
tags: [astronomy]
---
# Kestrel Valley Observatory

The Kestrel Valley Observatory is a research station built in 1987 on Mount Orrin.
It was founded by the astronomer Ilse Marrow, who served as its first director.
The main instrument is the Harrow Telescope.
Visitors may tour the research station in summer.
"""

NAMES = {"entities": ["Ilse Marrow", "Harrow Telescope", "Paris"], "concepts": ["research station"]}


@pytest.fixture
def kb(tmp_path: Path) -> KBPaths:
    return init_kb(tmp_path / "kb")


def _source(tmp_path: Path, name: str = "observatory.md", text: str = OBSERVATORY) -> Path:
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _frontmatter(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_init_lays_out_a_knowledge_base(tmp_path: Path) -> None:
    kb = init_kb(tmp_path / "kb")
    for rel in ("loracle.toml", "raw", "wiki/index.md", "wiki/log.md", "wiki/SCHEMA.md"):
        assert (kb.root / rel).exists(), rel
    assert "[[stem|Title]]" in (kb.wiki / "SCHEMA.md").read_text()
    (kb.wiki / "index.md").write_text("my own index")
    init_kb(kb.root)  # again: nothing a person wrote is replaced
    assert (kb.wiki / "index.md").read_text() == "my own index"


def test_ingest_writes_linked_pages_index_and_log(kb: KBPaths, tmp_path: Path) -> None:
    llm = scripted_llm(names=lambda doc: NAMES)
    report = ingest(kb, [_source(tmp_path)], llm)
    [result] = report.results
    assert result.status == "added" and result.llm_calls == 1  # names (no sentence is long enough to shorten)
    assert (kb.raw / "observatory.md").read_text() == OBSERVATORY
    assert "Paris" in " ".join(result.notes)  # not in the source: dropped
    summary = kb.wiki / result.page
    meta = _frontmatter(summary)
    assert meta["type"] == "source" and meta["tags"] == ["astronomy"] and meta["sources"] == ["raw/observatory.md"]
    assert meta["aliases"] == ["Kestrel Valley Observatory"]  # the title: Obsidian offers it while typing a link
    marrow = kb.wiki / "entities/ilse-marrow.md"
    assert _frontmatter(marrow)["type"] == "entity" and _frontmatter(marrow)["aliases"] == ["Ilse Marrow"]
    assert (kb.wiki / "concepts/research-station.md").exists()  # offered by the model, used twice
    assert (kb.wiki / "entities/mount-orrin.md").exists()  # found in the text, though the model missed it
    assert not list(kb.wiki.rglob("paris*"))
    # the summary is the source's own sentences
    text = read_page(summary).section("Summary").text
    assert text.startswith("The Kestrel Valley Observatory is a research station built in 1987 on Mount Orrin.")
    # entity pages: a description, facts with their lines, related pages; links both ways
    assert "[[ilse-marrow|Ilse Marrow]]" in summary.read_text()
    page = read_page(marrow)
    assert page.section("Description").text.startswith("It was founded by the astronomer Ilse Marrow")
    facts = page.section("Facts").text
    assert f"[[{summary.stem}|Kestrel Valley Observatory]]" in facts
    assert "`raw/observatory.md:8`" in facts and "founded by the astronomer Ilse Marrow" in facts
    station = read_page(kb.wiki / "concepts/research-station.md")
    assert (
        "`raw/observatory.md:7`" in station.section("Facts").text
        and "`raw/observatory.md:10`" in station.section("Facts").text
    )
    orrin = read_page(kb.wiki / "entities/mount-orrin.md").section("Related").text.splitlines()
    assert "- [[kestrel-valley-observatory|Kestrel Valley Observatory]]" in orrin  # named in the same sentence
    # every link resolves the way Obsidian resolves it: by file name
    resolved, total = LinkGraph(kb.wiki).link_counts(by_alias=False)
    assert resolved == total > 0
    index = (kb.wiki / "index.md").read_text()
    assert index.index("### Sources") < index.index("### Entities") < index.index("### Concepts")
    assert re.search(r"^- \[\[ilse-marrow\|Ilse Marrow\]\]: It was founded by", index, re.MULTILINE)
    log = (kb.wiki / "log.md").read_text()
    assert re.search(r"^## \[\d{4}-\d{2}-\d{2}\] ingest \| Kestrel Valley Observatory$", log, re.MULTILINE)
    assert lint(kb).findings == []


def test_unchanged_source_is_skipped(kb: KBPaths, tmp_path: Path) -> None:
    llm = scripted_llm(names=lambda doc: NAMES)
    source = _source(tmp_path)
    ingest(kb, [source], llm)
    calls = llm.calls
    report = ingest(kb, [source], llm)
    assert [r.status for r in report.results] == ["unchanged"]
    assert llm.calls == calls
    assert wiki_status(kb).stale is False


def test_an_index_short_of_pages_is_reported_and_repaired_by_the_next_ingest(kb: KBPaths, tmp_path: Path) -> None:
    llm = scripted_llm(names=lambda doc: NAMES)
    source = _source(tmp_path)
    [result] = ingest(kb, [source], llm).results
    full = (kb.wiki / "index.md").read_text()
    # what a crash after the state was saved but before index.md was rebuilt leaves (a knowledge base made
    # before the state recorded that the index was owed, so nothing marks it)
    (kb.wiki / "index.md").write_text(INDEX_TEMPLATE)
    status = wiki_status(kb)
    assert status.stale and result.page in status.unindexed_pages
    [again] = ingest(kb, [source], llm).results
    assert again.status == "unchanged"
    assert (kb.wiki / "index.md").read_text() == full and not wiki_status(kb).stale


def test_a_page_written_before_a_crash_is_still_updated_later(kb: KBPaths, tmp_path: Path) -> None:
    """A crash after a source's pages were written but before the state recorded them: the rerun writes the same
    text, which must count as loracle's, so a later change of the source still updates it."""
    llm = scripted_llm(names=lambda doc: NAMES)
    source = _source(tmp_path)
    [first] = ingest(kb, [source], llm).results
    state = load_state(kb)
    state.sources.clear()
    state.written.clear()
    save_state(kb, state)
    ingest(kb, [source], llm)
    source.write_text(OBSERVATORY.replace("built in 1987", "built in 1988"))
    [changed] = ingest(kb, [source], llm).results
    assert changed.status == "updated" and not [n for n in changed.notes if "kept your edit" in n]
    assert "1988" in read_page(kb.wiki / first.page).section("Summary").text


def test_changed_source_updates_only_its_lines_and_keeps_hand_edits(kb: KBPaths, tmp_path: Path) -> None:
    llm = scripted_llm(names=lambda doc: NAMES)
    source = _source(tmp_path)
    [first] = ingest(kb, [source], llm).results
    summary_path, marrow = kb.wiki / first.page, kb.wiki / "entities/ilse-marrow.md"
    telescope = kb.wiki / "entities/harrow-telescope.md"
    # a person edits: their summary, a line of their own, a section of their own, a tag
    text = summary_path.read_text()
    text = re.sub(r"## Summary\n\n.*?\n\n", "## Summary\n\nMy own careful summary.\n\n", text, flags=re.DOTALL)
    summary_path.write_text(text.replace("tags:\n- astronomy", "tags:\n- astronomy\n- mine"))
    marrow.write_text(marrow.read_text() + "- Also wrote a book (my note).\n\n## My notes\n\nKeep this.\n")
    # the source changes: a new sentence about Marrow, no more telescope
    changed = OBSERVATORY.replace("The main instrument is the Harrow Telescope.", "Ilse Marrow retired in 2004.")
    changed = changed.replace(
        "It was founded by the astronomer Ilse Marrow", "It was founded by the physicist Ilse Marrow"
    )
    (kb.raw / "observatory.md").write_text(changed)  # edited in raw/ itself
    assert wiki_status(kb).changed_sources == ["raw/observatory.md"]
    [second] = ingest(kb, [kb.raw], llm).results
    assert second.status == "updated"
    assert any("kept your edit" in note and "Summary" in note for note in second.notes)
    page = read_page(summary_path)
    assert page.section("Summary").text == "My own careful summary."
    assert page.frontmatter["tags"] == ["astronomy", "mine"]
    facts = read_page(marrow).section("Facts").text.splitlines()
    assert "- Also wrote a book (my note)." in facts
    assert sum("physicist" in line for line in facts) == 1 and not any("astronomer" in m for m in facts)
    assert any("Ilse Marrow retired in 2004." in line for line in facts)
    assert read_page(marrow).section("My notes").text == "Keep this."
    assert read_page(telescope).section("Facts").text == ""  # its only line came from the old text
    assert read_page(telescope).section("Description") is None  # and so did its description
    log = (kb.wiki / "log.md").read_text()
    assert log.count("] ingest | Kestrel Valley Observatory") == 2 and "`raw/observatory.md` (changed)" in log


def test_removed_source_is_logged_and_its_claims_flagged(kb: KBPaths, tmp_path: Path) -> None:
    llm = scripted_llm(names=lambda doc: {"entities": ["Ilse Marrow", "Harrow Telescope"], "concepts": []})
    other = OBSERVATORY.replace("Kestrel Valley Observatory", "Orrin Museum").replace("Harrow Telescope", "old clock")
    ingest(kb, [_source(tmp_path), _source(tmp_path, "museum.md", other)], llm)
    (kb.raw / "observatory.md").unlink()
    assert wiki_status(kb).missing_sources == ["raw/observatory.md"]
    report = ingest(kb, [_source(tmp_path, "museum.md", other)], llm)
    removed = [r for r in report.results if r.status == "removed"]
    assert [r.source for r in removed] == ["raw/observatory.md"]
    telescope = read_page(kb.wiki / "entities/harrow-telescope.md")
    marrow = read_page(kb.wiki / "entities/ilse-marrow.md")
    assert telescope.frontmatter["status"] == "unsupported"  # only the removed source supported it
    assert "status" not in marrow.frontmatter  # the museum source still supports it
    assert "[!warning] Source removed" in (kb.wiki / removed[0].page).read_text()
    assert "] remove | Kestrel Valley Observatory" in (kb.wiki / "log.md").read_text()
    assert {f.page for f in lint(kb).findings if f.kind == "unsupported"} >= {"entities/harrow-telescope.md"}


def test_malformed_names_answer_never_corrupts_a_page(kb: KBPaths, tmp_path: Path) -> None:
    llm = scripted_llm(names=lambda doc: "I think the names are Ilse and some others")
    [result] = ingest(kb, [_source(tmp_path)], llm).results
    assert result.status == "added" and result.llm_calls == 2  # names, one retry
    assert any("no names from the model" in note for note in result.notes)
    assert _frontmatter(kb.wiki / result.page)["type"] == "source"
    # the source's own proper names still get pages; the model's prose gets none
    assert sorted(p.stem for p in (kb.wiki / "entities").glob("*.md")) == [
        "harrow-telescope",
        "ilse-marrow",
        "kestrel-valley-observatory",
        "mount-orrin",
    ]


def test_the_local_writer_never_writes_the_summary_itself(kb: KBPaths, tmp_path: Path) -> None:
    """A small local model is only asked for names (and to shorten long sentences): it cannot invent a claim."""
    llm = scripted_llm(summary=lambda doc: "Bananas are purple fruit grown on Mars by penguins.")
    [result] = ingest(kb, [_source(tmp_path)], llm).results
    summary = read_page(kb.wiki / result.page).section("Summary").text
    assert "Bananas" not in summary and "research station built in 1987" in summary
    assert not any("Summarise" in prompt for prompt in llm.backend.prompts)


def test_an_endpoint_writer_summarises_and_its_unsupported_sentences_are_marked(kb: KBPaths, tmp_path: Path) -> None:
    said = (
        "The Kestrel Valley Observatory is a research station built in 1987 on Mount Orrin. "
        "Ilse Marrow still directs the observatory today."
    )
    writer = scripted_endpoint(summary=lambda doc: said)
    [result] = ingest(kb, [_source(tmp_path)], writer, fast=scripted_llm(names=lambda doc: NAMES)).results
    summary = read_page(kb.wiki / result.page).section("Summary").text
    assert summary == (
        "The Kestrel Valley Observatory is a research station built in 1987 on Mount Orrin. "
        "Ilse Marrow still directs the observatory today. ^[not found in the source]"
    )
    assert any("1 of the writer's 2 summary sentences not found in the source" in note for note in result.notes)


LONG = """---
title: Kobe
---
Kobe is the capital city of Hyogo Prefecture on the island of Honshu and, with a population of 1.5 million, is the
seventh-largest city of Japan.
The city lies on Osaka Bay.
"""


@pytest.mark.parametrize(
    ("proposal", "expected"),
    [
        # a deletion of the whole trailing coordinated part: what is left is still claimed
        ("Kobe is the capital city of Hyogo Prefecture on the island of Honshu.", "Kobe is the capital city of Hyogo"),
        # glues "capital city of" to another phrase: a claim the source does not make, refused
        ("Kobe is the capital city of the seventh-largest city of Japan.", "Kobe is the capital city of Hyogo"),
        ("Kobe is a small village on the island of Honshu.", "Kobe is the capital city of Hyogo Prefecture on the"),
    ],
)
def test_a_long_sentence_is_shortened_only_by_safe_deletions(
    kb: KBPaths, tmp_path: Path, proposal: str, expected: str
) -> None:
    llm = scripted_llm(shorten=lambda sentence: proposal)
    [result] = ingest(kb, [_source(tmp_path, "kobe.md", LONG)], llm).results
    assert result.llm_calls == 2  # names, one shortening
    summary = read_page(kb.wiki / result.page).section("Summary").text
    first = summary.split(". ")[0] + "."
    assert first.startswith(expected)
    if proposal.startswith("Kobe is the capital city of Hyogo"):
        assert first == proposal
    else:
        assert "1.5 million" in first  # the source's sentence as written


@pytest.mark.parametrize("title", ["../../x", "CON", "A" * 300, "..", "/etc/passwd"])
def test_hostile_titles_stay_safe_files_inside_the_wiki(kb: KBPaths, tmp_path: Path, title: str) -> None:
    text = f"---\ntitle: {title!r}\n---\nThe {title} is mentioned here with enough words to summarise it.\n"
    llm = scripted_llm(names=lambda doc: {"entities": [title], "concepts": []})
    [result] = ingest(kb, [_source(tmp_path, "evil.md", text)], llm).results
    assert result.status == "added", result.error
    written = [p for p in kb.root.rglob("*") if p.is_file()]
    assert all(p.resolve().is_relative_to(kb.root.resolve()) for p in written)
    for page in (kb.wiki / result.page, *(kb.wiki / p for p in result.pages)):
        assert page.resolve().parent.parent == kb.wiki.resolve()
        assert len(page.name) <= 100 and page.stem.lower() not in ("con", "..", "")
        assert _frontmatter(page)["title"] == title  # the title itself survives, quoted, in valid YAML
    assert not (tmp_path / "x").exists() and not (kb.root.parent / "x.md").exists()


def test_bad_files_are_reported_by_name_and_the_rest_go_on(kb: KBPaths, tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "good.md").write_text(OBSERVATORY)
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02binary")
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (folder / "empty.md").write_text("  \n")
    (folder / "broken.md").write_text("---\ntitle: [unclosed\n---\nbody\n")
    report = ingest(kb, [folder, tmp_path / "missing.md"], scripted_llm())
    failed = {r.error.split(":")[0] for r in report.failed}
    assert {str(tmp_path / "missing.md")} <= failed
    names = " ".join(r.error for r in report.failed)
    for name in ("binary.txt", "latin1.txt", "empty.md", "broken.md"):
        assert name in names
    assert report.count("added") == 1


def test_the_knowledge_base_itself_is_not_a_source(kb: KBPaths, tmp_path: Path) -> None:
    (kb.wiki / "note.md").write_text("# A page someone wrote in the wiki\n\nWith some words in it.\n")
    for path in (kb.root, kb.wiki, tmp_path):
        [result] = ingest(kb, [path], scripted_llm()).results
        assert result.status == "failed" and "part of the knowledge base itself" in result.error
    assert not any(kb.raw.iterdir())


def test_two_ingests_at_once_lose_nothing(kb: KBPaths, tmp_path: Path) -> None:
    sources = [_source(tmp_path, f"doc{i}.md", OBSERVATORY.replace("Kestrel Valley", f"Station {i}")) for i in range(4)]
    errors: list[BaseException] = []

    def run(paths: list[Path]) -> None:
        try:
            ingest(kb, paths, scripted_llm(names=lambda doc: NAMES))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(sources[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    status = wiki_status(kb)
    assert status.sources == 4 and status.pages["source"] == 4
    index = (kb.wiki / "index.md").read_text()
    log = (kb.wiki / "log.md").read_text()
    for i in range(4):
        assert f"Station {i} Observatory" in index and f"ingest | Station {i} Observatory" in log
    facts = read_page(kb.wiki / "entities/ilse-marrow.md").section("Facts").text.splitlines()
    assert len(facts) == 4  # one line per source, none lost


def test_names_match_existing_pages_by_alias(kb: KBPaths, tmp_path: Path) -> None:
    (kb.wiki / "entities/marrow.md").write_text("---\ntitle: Marrow\naliases: [Ilse Marrow]\n---\n# Marrow\n")
    ingest(kb, [_source(tmp_path)], scripted_llm(names=lambda doc: {"entities": ["Ilse Marrow"], "concepts": []}))
    assert not (kb.wiki / "entities/ilse-marrow.md").exists()
    page = read_page(kb.wiki / "entities/marrow.md")
    assert page.frontmatter["aliases"] == ["Ilse Marrow"] and "Ilse Marrow" in page.section("Facts").text


def test_html_source_cites_lines_of_its_text(kb: KBPaths, tmp_path: Path) -> None:
    html = (
        "<html><head><title>Corra River</title></head><body><h1>Corra River</h1>"
        "<p>The Corra River powers the observatory.</p><p>Ilse Marrow mapped the Corra River in 1990.</p></body></html>"
    )
    source = _source(tmp_path, "corra.html", html)
    llm = scripted_llm(names=lambda doc: {"entities": ["Ilse Marrow"], "concepts": []})
    [result] = ingest(kb, [source], llm).results
    assert result.status == "added", result.error
    assert (kb.raw / "corra.html").read_text() == html  # the raw source is kept as it was
    facts = read_page(kb.wiki / "entities/ilse-marrow.md").section("Facts").text
    assert "Ilse Marrow mapped the Corra River in 1990." in facts and "`raw/corra.html:" in facts


def test_names_are_whole_and_never_function_words_or_fragments(kb: KBPaths, tmp_path: Path) -> None:
    """The model's picks are snapped to the source: articles off, its case, no fragments, no function words."""
    entities = ["The Harrow Telescope", "Harrow", "Valley Observatory", "ilse marrow", "Velmora"]
    concepts = ["the research station", "town of", "built", "of the"]
    llm = scripted_llm(names=lambda doc: {"entities": entities, "concepts": concepts})
    [result] = ingest(kb, [_source(tmp_path)], llm).results
    assert sorted(result.pages) == [
        "concepts/research-station.md",
        "entities/harrow-telescope.md",
        "entities/ilse-marrow.md",  # written as the source writes it
        "entities/kestrel-valley-observatory.md",
        "entities/mount-orrin.md",
    ]
    assert read_page(kb.wiki / "entities/ilse-marrow.md").frontmatter["title"] == "Ilse Marrow"
    dropped = " ".join(result.notes)
    assert "town of" in dropped and "Velmora" in dropped  # a function-word phrase, and a name not in the source


MARROW = """---
title: Ilse Marrow
aliases: [Marrow]
---
Ilse Marrow is an astronomer who founded the [[Kestrel Valley Observatory]].
She retired in 2004 and wrote [[Notes on Comets|a book]] about the sky over ![[orrin.png]] [[the]] valley.
"""


def test_quoted_source_links_point_at_pages_by_file_name_or_are_unlinked(kb: KBPaths, tmp_path: Path) -> None:
    linked = OBSERVATORY.replace("the astronomer Ilse Marrow", "the astronomer [[Ilse Marrow|Marrow]]")
    linked = linked.replace("the Harrow Telescope.", "the Harrow Telescope, chosen by [[Marrow]].")  # her alias
    sources = [_source(tmp_path, "observatory.md", linked), _source(tmp_path, "marrow.md", MARROW)]
    ingest(kb, sources, scripted_llm())
    facts = read_page(kb.wiki / "entities/ilse-marrow.md").section("Facts").text
    assert "founded by the astronomer [[ilse-marrow|Marrow]]" in facts  # the label kept, the target a file name
    assert "founded the [[kestrel-valley-observatory|Kestrel Valley Observatory]]" in facts
    assert "the Harrow Telescope, chosen by [[ilse-marrow|Marrow]]." in facts  # an alias links its page
    assert not (kb.wiki / "entities/marrow.md").exists()
    book = read_page(kb.wiki / "entities/notes-on-comets.md").section("Facts").text  # a linked name has a page
    assert "wrote [[notes-on-comets|a book]] about the sky over the valley." in book  # no attachment, "the" unlinked
    graph = LinkGraph(kb.wiki)
    resolved, total = graph.link_counts(by_alias=False)
    assert resolved == total > 0
    # the entity page links the summary of the source about it, and the source's aliases are the page's
    marrow = read_page(kb.wiki / "entities/ilse-marrow.md")
    assert "- [[ilse-marrow-summary|Ilse Marrow]]" in marrow.section("Related").text
    assert marrow.frontmatter["aliases"] == ["Ilse Marrow", "Marrow"]
    assert _frontmatter(kb.wiki / "sources/ilse-marrow-summary.md")["aliases"] == ["Ilse Marrow", "Marrow"]
    assert not [f for f in lint(kb).findings if f.kind == "duplicate"]  # a summary and its entity page coexist


def test_the_source_about_a_name_writes_its_description(kb: KBPaths, tmp_path: Path) -> None:
    ingest(kb, [_source(tmp_path)], scripted_llm())
    page = read_page(kb.wiki / "entities/ilse-marrow.md")
    assert page.section("Description").text.startswith("It was founded by the astronomer Ilse Marrow")
    ingest(kb, [_source(tmp_path, "marrow.md", MARROW)], scripted_llm())  # a source titled Ilse Marrow
    page = read_page(kb.wiki / "entities/ilse-marrow.md")
    assert page.section("Description").text == "Ilse Marrow is an astronomer who founded the " + (
        "[[kestrel-valley-observatory|Kestrel Valley Observatory]]."
    )
    assert page.frontmatter["summary"] == "Ilse Marrow is an astronomer who founded the Kestrel Valley Observatory."
    other = OBSERVATORY.replace("Kestrel Valley Observatory", "Orrin Museum")
    ingest(kb, [_source(tmp_path, "museum.md", other)], scripted_llm())  # not about her: the description stays
    assert (
        read_page(kb.wiki / "entities/ilse-marrow.md").section("Description").text == page.section("Description").text
    )


def _person_frontmatter(path: Path, lines: list[str]) -> None:
    """Replace a page's frontmatter with `lines`, as a person editing it in Obsidian would."""
    body = path.read_text().split("\n---\n", 1)[1]
    path.write_text("---\n" + "\n".join(lines) + "\n---\n" + body)


def _frontmatter_lines(path: Path) -> list[str]:
    return path.read_text().split("\n---\n", 1)[0].splitlines()[1:]


def test_ingest_and_merges_keep_a_persons_frontmatter_keys_order_and_values(kb: KBPaths, tmp_path: Path) -> None:
    llm = scripted_llm(names=lambda doc: {"entities": ["Ilse Marrow", "Harrow Telescope"], "concepts": []})
    museum = OBSERVATORY.replace("Kestrel Valley Observatory", "Orrin Museum").replace("Harrow Telescope", "old clock")
    [observatory, gone] = ingest(kb, [_source(tmp_path), _source(tmp_path, "museum.md", museum)], llm).results
    marrow, summary, museum_page = kb.wiki / "entities/ilse-marrow.md", kb.wiki / observatory.page, kb.wiki / gone.page
    mine = [  # custom keys first and between loracle's, comments, values a careless rewrite would change
        "# my card for her",
        "rating: 5   # out of 5",
        "aliases: [Dr. Marrow, 'Ilse Marrow']",
        "publish: yes",
        "type: entity",
        "due: 12:30",
        "zip: 01234",
        "version: 1.10",
        "tags:",
        "- people     # mine",
        "title: Ilse Marrow",
        "sources: [raw/observatory.md, raw/museum.md]",
        "summary: My own line about her.",
    ]
    _person_frontmatter(marrow, mine)
    _person_frontmatter(summary, [*_frontmatter_lines(summary), "project: kestrel", "aliases_note: keep me"])
    _person_frontmatter(museum_page, ["status: draft  # my status", *_frontmatter_lines(museum_page)])
    summary_before = _frontmatter_lines(summary)
    # the observatory source changes (Marrow's page merges its new lines), then the museum source goes
    changed = OBSERVATORY.replace("The main instrument is the Harrow Telescope.", "Ilse Marrow retired in 2004.")
    changed = changed.replace("tags: [astronomy]", "tags: [astronomy, history]\naliases: [KVO]")
    ingest(kb, [_source(tmp_path, text=changed)], llm)
    (kb.raw / "museum.md").unlink()
    ingest(kb, [kb.raw], llm)

    lines = _frontmatter_lines(marrow)
    assert lines[: len(mine)] == mine  # every line as typed, in order; loracle only appended
    assert [line.split(":")[0] for line in lines[len(mine) :]] == ["updated"]
    assert any("Ilse Marrow retired in 2004." in line for line in read_page(marrow).section("Facts").text.splitlines())
    after = _frontmatter_lines(summary)
    assert [k for k in after if k.split(":")[0] in ("project", "aliases_note")] == summary_before[-2:]
    meta = read_page(summary).frontmatter
    assert meta["tags"] == ["astronomy", "history"] and meta["aliases"] == ["Kestrel Valley Observatory", "KVO"]
    assert [k for k in meta if k != "updated"] == [
        k.split(":")[0] for k in summary_before if not k.startswith(("-", " ", "updated"))
    ]
    # the museum's source is gone: its page is flagged by the callout, the person's status kept
    assert _frontmatter_lines(museum_page)[0] == "status: draft  # my status"
    assert "[!warning] Source removed" in museum_page.read_text()
    assert gone.page in {f.page for f in lint(kb).findings if f.kind == "unsupported"}
    assert gone.page in wiki_status(kb).unsupported_pages
