"""Chunking documents for retrieval: headings start chunks, token budget holds, line spans point at the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from loracle.documents import Document
from loracle.sources import chunk_document, read_document
from loracle.sources.chunking import estimate_tokens


def test_headings_start_chunks_and_lines_count_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "doc.md"
    path.write_text(
        "---\ntitle: Doc\n---\n\n# Intro\n\nFirst paragraph.\n\n## Details\nLine one.\nLine two.\n", encoding="utf-8"
    )
    lines = path.read_text(encoding="utf-8").splitlines()
    chunks = chunk_document(read_document(path), max_tokens=50)
    assert [c.heading for c in chunks] == ["Intro", "Details"]
    for chunk in chunks:
        assert chunk.text == "\n".join(lines[chunk.start_line - 1 : chunk.end_line])
    assert (chunks[1].start_line, chunks[1].end_line) == (9, 11)
    assert chunks[0].id == "doc#L5-L7"


def test_token_budget_is_kept_and_nothing_is_lost() -> None:
    paragraphs = [" ".join(f"w{p}x{i}" for i in range(30)) for p in range(10)]
    doc = Document.from_text("\n\n".join(paragraphs), "Long")
    chunks = chunk_document(doc, max_tokens=70)
    assert len(chunks) == 5
    assert all(estimate_tokens(c.text) <= 70 for c in chunks)
    assert " ".join(c.text for c in chunks).split() == " ".join(paragraphs).split()
    assert [c.start_line for c in chunks] == [1, 5, 9, 13, 17]


def test_overlong_line_is_split_by_words_on_the_same_line() -> None:
    doc = Document.from_text("# T\n" + " ".join(f"word{i}" for i in range(100)), "T")
    chunks = chunk_document(doc, max_tokens=30)
    assert all(estimate_tokens(c.text) <= 30 for c in chunks)
    assert {c.start_line for c in chunks[1:]} == {2}
    assert "word99" in chunks[-1].text


def test_overlong_line_is_split_between_sentences_into_even_pieces() -> None:
    sentences = [f"Sentence {i} says {' '.join(['much'] * (i % 5 + 3))}." for i in range(24)]
    line = " ".join(sentences)
    chunks = chunk_document(Document.from_text(line, "T"), max_tokens=100)
    sizes = [estimate_tokens(c.text) for c in chunks]
    assert len(chunks) == -(-estimate_tokens(line) // 100)  # as few pieces as the budget allows
    assert max(sizes) <= 100 and max(sizes) - min(sizes) < 20  # no short tail of its own
    assert all(c.text.startswith("Sentence") and c.text.endswith(".") for c in chunks)
    assert " ".join(c.text for c in chunks) == line


def test_cjk_sentences_split_without_spaces() -> None:
    text = "东京是日本的首都。" * 40
    chunks = chunk_document(Document.from_text(text, "CJK"), max_tokens=60)
    assert all(c.text.endswith("。") for c in chunks)
    assert "".join(c.text for c in chunks) == text


def test_headings_in_code_fences_are_text() -> None:
    doc = Document.from_text("# Real\n\n```\n# not a heading\n```\n", "T")
    chunks = chunk_document(doc, max_tokens=100)
    assert len(chunks) == 1 and chunks[0].heading == "Real"


def test_cjk_counts_per_character() -> None:
    assert estimate_tokens("東京都は日本") == 6
    doc = Document.from_text("东京是日本的首都。" * 40, "CJK")
    assert all(estimate_tokens(c.text) <= 60 for c in chunk_document(doc, max_tokens=60))


def test_tiny_budget_refused() -> None:
    with pytest.raises(ValueError):
        chunk_document(Document.from_text("x", "x"), max_tokens=2)
