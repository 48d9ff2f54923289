"""Symlinks in a knowledge base: no file is read through a link that leaves the folder it is read from.

A knowledge base cloned from someone else may hold links to the user's own files (~/.ssh). Each test plants
such a link where one kind of reader looks (the page API's wiki view, lint, status, the index and log, ingest,
query, search sync, compile, the raw/ scan) and checks the secret behind it never comes out. Links that stay
inside their folder are followed (a page linked to another page reads as that page).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loracle.confine import OutsideLinkError, read_text_in
from loracle.errors import LoracleError
from loracle.kb import KBPaths, find_kb
from loracle.pipeline import raw_source, wiki_source
from loracle.search.index import SearchIndex
from loracle.serve.wiki_view import WikiView
from loracle.sources import iter_source_files
from loracle.wiki import ingest, init_kb, lint, query, wiki_status
from loracle.wiki.index import append_log, rebuild_index
from loracle.wiki.links import LinkGraph
from loracle.wiki.state import load_state
from tests.unit.test_wiki_helpers import scripted_llm

SECRET = "TOPSECRET-4f1a"
PAGE = "---\ntitle: Harbour\ntype: concept\n---\n# Harbour\n\nThe harbour of Varn holds twelve boats.\n"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside the knowledge base that must never be read through it."""
    path = tmp_path / "home" / ".ssh" / "id_rsa.md"
    path.parent.mkdir(parents=True)
    path.write_text(f"---\ntitle: {SECRET}\n---\n# {SECRET}\n\nThe key is {SECRET}.\n", encoding="utf-8")
    return path


@pytest.fixture
def kb(tmp_path: Path) -> KBPaths:
    kb = init_kb(tmp_path / "kb")
    (kb.wiki / "concepts" / "harbour.md").write_text(PAGE, encoding="utf-8")
    return kb


def _everything_in(kb: KBPaths) -> str:
    """Every regular file loracle wrote into the knowledge base, as text (links themselves are not followed)."""
    texts = []
    for folder, _dirs, files in os.walk(kb.root):
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                texts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(texts)


def test_a_page_linked_out_of_the_wiki_is_not_a_page(kb: KBPaths, secret: Path) -> None:
    (kb.wiki / "concepts" / "h.md").symlink_to(secret)
    graph = LinkGraph(kb.wiki)
    assert "concepts/h.md" not in graph.pages and "concepts/h.md" not in graph.files
    assert SECRET not in " ".join(p.text for p in graph.pages.values())
    view = WikiView(kb.wiki)  # what the page API reads
    assert view.page("concepts/h.md") is None
    assert view.page("concepts/harbour.md") is not None


def test_a_linked_folder_inside_the_wiki_is_not_entered(kb: KBPaths, secret: Path) -> None:
    (kb.wiki / "keys").symlink_to(secret.parent, target_is_directory=True)
    graph = LinkGraph(kb.wiki)
    assert not [rel for rel in graph.files if rel.startswith("keys/")]


def test_a_link_that_stays_inside_the_wiki_reads_as_its_target(kb: KBPaths) -> None:
    (kb.wiki / "concepts" / "port.md").symlink_to("harbour.md")
    graph = LinkGraph(kb.wiki)
    assert graph.pages["concepts/port.md"].title == "Harbour"


def test_a_link_to_another_part_of_the_knowledge_base_is_not_followed(kb: KBPaths) -> None:
    (kb.root / "loracle.toml").write_text(f'[serve]\ntoken = "{SECRET}"\n', encoding="utf-8")
    (kb.wiki / "concepts" / "config.md").symlink_to(kb.root / "loracle.toml")
    assert "concepts/config.md" not in LinkGraph(kb.wiki).pages
    with pytest.raises(OutsideLinkError, match="outside"):
        read_text_in(kb.wiki / "concepts" / "config.md", kb.wiki)


def test_lint_and_status_do_not_count_a_link_out_as_a_page(kb: KBPaths, secret: Path) -> None:
    before = lint(kb).pages
    (kb.wiki / "concepts" / "h.md").symlink_to(secret)
    report = lint(kb)
    assert report.pages == before
    assert all(f.page != "concepts/h.md" for f in report.findings)
    assert sum(wiki_status(kb).pages.values()) == before


def test_index_and_log_linked_out_are_refused_not_copied(kb: KBPaths, secret: Path) -> None:
    for name in ("index.md", "log.md"):
        (kb.wiki / name).unlink()
        (kb.wiki / name).symlink_to(secret)
    with pytest.raises(OutsideLinkError, match=r"index\.md"):
        rebuild_index(kb, load_state(kb))
    with pytest.raises(OutsideLinkError, match=r"log\.md"):
        append_log(kb, "ingest", "x")
    assert SECRET not in _everything_in(kb)


def test_ingest_refuses_a_link_in_raw_that_leads_out(kb: KBPaths, secret: Path) -> None:
    (kb.raw / "notes.md").symlink_to(secret)
    report = ingest(kb, [kb.raw / "notes.md"], scripted_llm())
    [result] = report.results
    assert result.status == "failed" and "outside the knowledge base" in result.error
    report = ingest(kb, [kb.raw], scripted_llm())  # the whole folder: the link is skipped
    assert all(r.source != "raw/notes.md" for r in report.results)
    assert SECRET not in _everything_in(kb)


def test_ingest_does_not_read_an_entity_page_linked_out(kb: KBPaths, secret: Path, tmp_path: Path) -> None:
    (kb.wiki / "entities" / "ilse-marrow.md").symlink_to(secret)
    source = tmp_path / "in" / "obs.md"
    source.parent.mkdir()
    source.write_text("# Observatory\n\nIlse Marrow founded the observatory.\n", encoding="utf-8")
    llm = scripted_llm(names=lambda doc: {"entities": ["Ilse Marrow"], "concepts": []})
    [result] = ingest(kb, [source], llm).results
    assert result.status == "failed" and "outside" in result.error
    assert SECRET not in _everything_in(kb)


def test_query_does_not_quote_a_raw_source_linked_out(kb: KBPaths, secret: Path) -> None:
    (kb.raw / "harbour.md").symlink_to(secret)
    page = PAGE.replace("type: concept", "type: concept\nsources: [raw/harbour.md]")
    (kb.wiki / "concepts" / "harbour.md").write_text(page, encoding="utf-8")
    answer = query(kb, "How many boats does the harbour hold?", scripted_llm(), mode="bm25")
    assert answer.citations and SECRET not in str(answer.citations)


def test_search_sync_skips_a_page_linked_out(kb: KBPaths, secret: Path) -> None:
    (kb.wiki / "concepts" / "h.md").symlink_to(secret)
    with SearchIndex(kb.search_db, vectors=False) as index:
        report = index.sync_folder(kb.wiki)
        assert index.search(SECRET, mode="bm25") == []
    assert report.added == ["concepts-harbour"]


def test_compile_sources_skip_links_out(kb: KBPaths, secret: Path) -> None:
    (kb.wiki / "concepts" / "h.md").symlink_to(secret)
    (kb.raw / "h.md").symlink_to(secret)
    for source in (wiki_source(kb.root), raw_source(kb.root)):
        docs, errors = source.read_all()
        assert SECRET not in " ".join(d.text for d in docs) and not errors
        link = source.root / ("concepts/h.md" if source.name == "wiki" else "h.md")
        assert source.doc_id(link) is None  # what `watch` asks of a changed file before compiling it
    assert [p.name for p in iter_source_files(kb.raw)] == []


@pytest.mark.parametrize("folder", ["raw", "wiki", "adapters", ".loracle"])
def test_a_knowledge_base_whose_folder_links_out_is_refused(tmp_path: Path, secret: Path, folder: str) -> None:
    kb = init_kb(tmp_path / "kb")
    target = kb.root / folder
    if target.exists():
        os.rename(target, tmp_path / "aside")
    target.symlink_to(secret.parent, target_is_directory=True)
    with pytest.raises(LoracleError, match=f"{folder}: a link to .*outside the knowledge base"):
        find_kb(kb.root)


def test_a_folder_linked_within_the_knowledge_base_is_allowed(tmp_path: Path) -> None:
    kb = init_kb(tmp_path / "kb")
    os.rename(kb.raw, kb.root / "sources")
    kb.raw.symlink_to("sources", target_is_directory=True)
    assert find_kb(kb.root).raw == kb.raw
