"""The search index on tiny corpora: BM25 fields and weights, CJK, sync, corruption, chunks, hybrid fusion.

A small concept embedder stands in for MiniLM here so these tests run in milliseconds; the real model is
exercised in tests/integration/test_search_minilm.py.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from loracle.documents import Document
from loracle.errors import LoracleError
from loracle.search import IndexedPage, SearchIndex
from loracle.sources import chunk_document
from tests.concepts import ConceptEmbedder


def page(page_id: str, title: str, body: str, **kwargs: object) -> IndexedPage:
    return IndexedPage(id=page_id, title=title, body=body, path=f"{page_id}.md", **kwargs)


@pytest.fixture
def bm25_index(tmp_path: Path):
    index = SearchIndex(tmp_path / "search.db", vectors=False)
    yield index
    index.close()


@pytest.fixture
def hybrid_index(tmp_path: Path):
    index = SearchIndex(tmp_path / "search.db", embedder=ConceptEmbedder())
    yield index
    index.close()


def ids(hits: list) -> list[str]:
    return [h.id for h in hits]


def test_title_and_alias_outrank_body_mentions(bm25_index: SearchIndex) -> None:
    bm25_index.upsert(page("mentions", "Birds of the valley", "The kestrel, the kestrel again, a kestrel nest."))
    bm25_index.upsert(page("kestrel", "Kestrel", "A small falcon."))
    bm25_index.upsert(page("kvo", "Observatory", "A building on a hill.", aliases=("KVO", "Kestrel Valley Obs")))
    assert ids(bm25_index.search("kestrel", mode="bm25"))[0] == "kestrel"
    assert ids(bm25_index.search("KVO", mode="bm25")) == ["kvo"]
    assert bm25_index.search("falcon", mode="bm25")[0].snippet.startswith("A small falcon")


def test_tags_and_headings_are_searchable(bm25_index: SearchIndex) -> None:
    bm25_index.upsert(page("a", "A", "text", tags=("astronomy",)))
    bm25_index.upsert(page("b", "B", "## Funding\nmoney", headings=("Funding",)))
    assert ids(bm25_index.search("astronomy", mode="bm25")) == ["a"]
    assert ids(bm25_index.search("funding", mode="bm25")) == ["b"]


def test_chinese_and_japanese_two_character_queries(bm25_index: SearchIndex) -> None:
    bm25_index.upsert(page("zh", "长江", "长江是中国最长的河流，流经上海。"))
    bm25_index.upsert(page("ja", "東京", "東京都は日本の首都です。人口が多い。"))
    bm25_index.upsert(page("en", "London", "London is the capital of England."))
    assert ids(bm25_index.search("上海", mode="bm25")) == ["zh"]
    assert ids(bm25_index.search("河流", mode="bm25")) == ["zh"]
    assert ids(bm25_index.search("首都", mode="bm25")) == ["ja"]
    assert ids(bm25_index.search("人口", mode="bm25")) == ["ja"]
    assert ids(bm25_index.search("日本の首都", mode="bm25")) == ["ja"]
    assert ids(bm25_index.search("最长", mode="bm25")) == ["zh"]
    assert bm25_index.search("北京", mode="bm25") == []  # adjacent characters only: 北 and 京 appear apart
    assert set(ids(bm25_index.search("capital 首都", mode="bm25"))) == {"ja", "en"}
    hit = bm25_index.search("首都", mode="bm25")[0]
    assert "首都" in hit.snippet  # snippets come from the original text, not the bigram form


def test_query_syntax_is_inert(bm25_index: SearchIndex) -> None:
    bm25_index.upsert(page("p", "Page", "near and or not title body"))
    for query in ['"', "AND", "NEAR(a b)", "title:page", "*", "a OR", "^x", "-", "(", "   ", "'; DROP TABLE x"]:
        bm25_index.search(query, mode="bm25")  # no exception
    assert ids(bm25_index.search("title:page", mode="bm25")) == ["p"]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_sync_folder_frontmatter_is_metadata_not_a_hit(tmp_path: Path, bm25_index: SearchIndex) -> None:
    wiki = tmp_path / "wiki"
    write(
        wiki,
        "kestrel.md",
        "---\ntitle: Kestrel Valley\naliases: [KVO]\ntags: [place]\nsecret: zebrafish\n---\n# K\nA valley.\n",
    )
    report = bm25_index.sync_folder(wiki)
    assert report.added == ["kestrel"] and not report.errors
    assert bm25_index.search("zebrafish", mode="bm25") == []
    assert bm25_index.search("secret", mode="bm25") == []
    assert ids(bm25_index.search("KVO", mode="bm25")) == ["kestrel"]
    assert ids(bm25_index.search("place", mode="bm25")) == ["kestrel"]
    hit = bm25_index.search("valley", mode="bm25")[0]
    assert (hit.title, hit.path) == ("Kestrel Valley", "kestrel.md")


def test_sync_skips_unchanged_updates_changed_drops_deleted(tmp_path: Path, hybrid_index: SearchIndex) -> None:
    wiki = tmp_path / "wiki"
    write(wiki, "a.md", "# A\nalpha\n")
    write(wiki, "sub/b.md", "# B\nbravo\n")
    write(wiki, "index.md", "# Index\n[[A]] alpha bravo\n")  # bookkeeping page: not indexed
    write(wiki, ".obsidian/c.md", "# C\ncharlie\n")
    first = hybrid_index.sync_folder(wiki)
    assert sorted(first.added) == ["a", "sub-b"]
    embedder = hybrid_index.embedder
    calls = embedder.calls
    second = hybrid_index.sync_folder(wiki)
    assert (second.unchanged, second.changed, embedder.calls) == (2, False, calls)
    assert hybrid_index.upsert(page("x", "X", "x")) is True
    assert hybrid_index.upsert(page("x", "X", "x")) is False
    write(wiki, "a.md", "# A\nalpha amended\n")
    (wiki / "sub" / "b.md").unlink()
    third = hybrid_index.sync_folder(wiki)
    assert (third.updated, third.removed, third.unchanged) == (["a"], ["sub-b"], 0)
    assert hybrid_index.search("bravo", mode="bm25") == []
    assert ids(hybrid_index.search("amended", mode="bm25")) == ["a"]
    assert "x" in ids(hybrid_index.search("x", mode="bm25"))  # pages not from this folder are left alone


def test_bad_pages_are_reported_and_keep_their_entry(tmp_path: Path, bm25_index: SearchIndex) -> None:
    wiki = tmp_path / "wiki"
    write(wiki, "good.md", "# Good\ngood text\n")
    bad = write(wiki, "bad.md", "# Bad\nbad text\n")
    bm25_index.sync_folder(wiki)
    bad.write_bytes(b"---\ntitle: [oops\n---\nbad text\n")
    write(wiki, "binary.md", "").write_bytes(b"\x00\x00binary")
    report = bm25_index.sync_folder(wiki)
    assert len(report.errors) == 2 and all("\n" not in e for e in report.errors)
    assert any("bad.md" in e and "frontmatter" in e for e in report.errors)
    assert report.removed == []
    assert ids(bm25_index.search("bad", mode="bm25")) == ["bad"]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_schema"])
def test_corrupt_database_is_rebuilt_from_the_files(tmp_path: Path, damage: str) -> None:
    wiki = tmp_path / "wiki"
    write(wiki, "a.md", "# A\nalpha\n")
    db = tmp_path / "state" / "search.db"
    with SearchIndex(db, vectors=False) as index:
        index.sync_folder(wiki)
    if damage == "garbage":
        db.write_bytes(b"this is not a database" * 100)
    elif damage == "truncated":
        db.write_bytes(db.read_bytes()[:1500])
    else:
        conn = sqlite3.connect(db)
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
        conn.commit()
        conn.close()
    with SearchIndex(db, vectors=False) as index:
        assert index.rebuilt
        report = index.sync_folder(wiki)
        assert report.rebuilt and report.added == ["a"]
        assert ids(index.search("alpha", mode="bm25")) == ["a"]
    with SearchIndex(db, vectors=False) as index:
        assert not index.rebuilt


def test_a_failed_transaction_leaves_nothing(bm25_index: SearchIndex) -> None:
    bm25_index.upsert(page("kept", "Kept", "kept"))
    with pytest.raises(RuntimeError), bm25_index.transaction():
        bm25_index.upsert(page("lost", "Lost", "lost"))
        bm25_index.remove("kept")
        raise RuntimeError("crash mid-write")
    assert ids(bm25_index.search("kept", mode="bm25")) == ["kept"]
    assert bm25_index.search("lost", mode="bm25") == []


def test_vector_side_finds_meaning_without_shared_words(hybrid_index: SearchIndex) -> None:
    hybrid_index.upsert(page("cats", "Domestic cats", "Cats purr and sleep."))
    hybrid_index.upsert(page("cars", "Cars", "An automobile has an engine."))
    hybrid_index.upsert(page("rhine", "Rhine", "The river flows north."))
    assert hybrid_index.search("feline", mode="bm25") == []
    assert ids(hybrid_index.search("feline", mode="vector"))[0] == "cats"
    hit = hybrid_index.search("feline", mode="hybrid")[0]
    assert (hit.id, hit.bm25_rank, hit.vector_rank) == ("cats", None, 1)


def test_strong_match_on_one_side_is_not_drowned(hybrid_index: SearchIndex) -> None:
    # The rare exact term is only in "code"; the vector side prefers the car pages (concept words).
    hybrid_index.upsert(page("code", "Part numbers", "Replacement part XJ9000 for the assembly."))
    for i in range(5):
        hybrid_index.upsert(page(f"car{i}", f"Car {i}", "vehicle automobile engine car " * (i + 1)))
    hits = hybrid_index.search("XJ9000 vehicle", mode="hybrid", n=3)
    assert hits[0].id == "code" or hits[1].id == "code"
    assert hits[0].bm25_rank == 1


def test_bm25_only_index(bm25_index: SearchIndex) -> None:
    bm25_index.upsert(page("p", "Page", "words"))
    assert ids(bm25_index.search("words")) == ["p"]  # hybrid falls back to BM25
    with pytest.raises(LoracleError, match="vector search is off"):
        bm25_index.search("words", mode="vector")
    with pytest.raises(LoracleError, match="mode"):
        bm25_index.search("words", mode="fuzzy")


def test_vectors_backfilled_and_other_writers_seen(tmp_path: Path) -> None:
    db = tmp_path / "search.db"
    with SearchIndex(db, vectors=False) as plain:
        plain.upsert(page("cats", "Cats", "cats purr"))
    reader = SearchIndex(db, embedder=ConceptEmbedder())
    writer = SearchIndex(db, embedder=ConceptEmbedder())
    try:
        assert ids(reader.search("kitten", mode="vector")) == ["cats"]  # embedded on first vector search
        writer.upsert(page("river", "Rhine", "water flows"))
        assert ids(reader.search("stream", mode="vector"))[0] == "river"  # the other connection's write
        writer.remove("cats")
        assert "cats" not in ids(reader.search("kitten", mode="vector"))
    finally:
        reader.close()
        writer.close()


def test_chunks_carry_lines_and_replace_stale_ones(tmp_path: Path, bm25_index: SearchIndex) -> None:
    path = write(tmp_path, "doc.md", "# Intro\nThe valley.\n\n# History\nFounded by Ilse Marrow.\n")
    from loracle.sources import read_document

    doc = read_document(path)
    chunks = chunk_document(doc, max_tokens=40)
    bm25_index.upsert_chunks(chunks)
    hit = bm25_index.search_chunks("who founded it Marrow", n=1, mode="bm25")[0]
    assert (hit.doc_id, hit.start_line, hit.end_line, hit.heading) == ("doc", 4, 5, "History")
    assert hit.text == "# History\nFounded by Ilse Marrow." and hit.path == str(path)
    assert bm25_index.search("Marrow", mode="bm25") == []  # chunks never show up as pages
    shorter = Document.from_text("# Intro\nThe valley only.", "doc", doc_id="doc")
    bm25_index.upsert_chunks(chunk_document(shorter))
    assert bm25_index.search_chunks("Marrow", mode="bm25") == []
    assert bm25_index.remove_chunks("doc") == 1
    assert bm25_index.search_chunks("valley", mode="bm25") == []


def test_own_writes_patch_the_vector_matrix_in_place(hybrid_index: SearchIndex) -> None:
    hybrid_index.upsert(page("cats", "Cats", "cats purr"))
    hybrid_index.upsert(page("cars", "Cars", "an automobile"))
    assert ids(hybrid_index.search("kitten", mode="vector"))[0] == "cats"  # loads the matrix
    hybrid_index.upsert(page("rhine", "Rhine", "water flows"))
    hybrid_index.upsert(page("cats", "Cats", "an engine, not a pet"))  # replaced: its old vector must go
    hybrid_index.remove("cars")
    cache = hybrid_index.pages._cache
    assert cache.version == hybrid_index.data_version()  # patched, not dropped
    assert sorted(cache.keys.tolist()) == sorted(r[0] for r in hybrid_index.conn.execute("SELECT rowid FROM page_vec"))
    assert ids(hybrid_index.search("stream", mode="vector"))[0] == "rhine"
    assert ids(hybrid_index.search("vehicle", mode="vector"))[0] == "cats"
    assert "cars" not in ids(hybrid_index.search("vehicle", mode="vector"))


def test_sync_skips_reading_files_whose_stamp_is_unchanged(tmp_path: Path, bm25_index: SearchIndex) -> None:
    wiki = tmp_path / "wiki"
    path = write(wiki, "a.md", "# A\nalpha\n")
    old = (1_600_000_000_000_000_000, 1_600_000_000_000_000_000)
    os.utime(path, ns=old)
    assert bm25_index.sync_folder(wiki).added == ["a"]
    path.write_text("# A\nomega\n", encoding="utf-8")  # same size, and the clock put back: looks unchanged
    os.utime(path, ns=old)
    assert bm25_index.sync_folder(wiki).unchanged == 1
    os.utime(path, ns=(old[0] + 10**9, old[1] + 10**9))
    assert bm25_index.sync_folder(wiki).updated == ["a"]


def test_a_file_saved_twice_within_the_clock_tick_is_not_missed(tmp_path: Path, bm25_index: SearchIndex) -> None:
    wiki = tmp_path / "wiki"
    path = write(wiki, "a.md", "# A\nalpha\n")
    stamp = path.stat().st_mtime_ns
    assert bm25_index.sync_folder(wiki).added == ["a"]  # written just now: no stamp is trusted yet
    path.write_text("# A\nomega\n", encoding="utf-8")
    os.utime(path, ns=(stamp, stamp))  # same size, same mtime
    assert bm25_index.sync_folder(wiki).updated == ["a"]
    assert ids(bm25_index.search("omega", mode="bm25")) == ["a"]


def test_vectors_from_another_embedder_are_dropped(tmp_path: Path) -> None:
    class Other(ConceptEmbedder):
        name = "other-model"

    db = tmp_path / "search.db"
    with SearchIndex(db, embedder=ConceptEmbedder()) as index:
        index.upsert(page("cats", "Cats", "cats purr"))
    other = Other()
    with SearchIndex(db, embedder=other) as index:
        assert ids(index.search("kitten", mode="vector")) == ["cats"]
        assert other.calls == 2  # the query, and the page re-embedded by this model


def test_a_synced_page_updated_directly_is_still_dropped_when_its_file_goes(
    tmp_path: Path, bm25_index: SearchIndex
) -> None:
    wiki = tmp_path / "wiki"
    path = write(wiki, "a.md", "# A\nalpha\n")
    bm25_index.sync_folder(wiki)
    assert bm25_index.upsert(page("a", "A", "alpha, updated by ingest"))  # keeps the folder as its origin
    path.unlink()
    assert bm25_index.sync_folder(wiki).removed == ["a"]
    assert bm25_index.search("alpha", mode="bm25") == []
