"""Reading sources: markdown, text, HTML, PDF; whole folders with bad files reported one line each."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loracle.errors import DocumentError
from loracle.sources import files as source_files
from loracle.sources import read_document, read_folder, source_id


def make_pdf(path: Path, lines: list[str]) -> None:
    """A real one-page PDF with the given text lines, built by hand (objects, xref table, trailer)."""
    escaped = [line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for line in lines]
    stream = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({line}) Tj T*" for line in escaped) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = "%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n"
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    path.write_bytes(out.encode("latin-1"))


def test_markdown_with_frontmatter(tmp_path: Path) -> None:
    path = tmp_path / "note.md"
    path.write_text("---\ntitle: The Note\ntags: [a]\n---\n# Heading\n\nBody text.\n", encoding="utf-8")
    doc = read_document(path)
    assert doc.title == "The Note"
    assert doc.frontmatter == {"title": "The Note", "tags": ["a"]}
    assert "title:" not in doc.text and doc.text.startswith("# Heading")


def test_html_title_and_text_without_scripts(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Rhine Facts</title><style>.x{color:red}</style>"
        "<script>var secret = 'tracking';</script></head>"
        "<body><h1>The Rhine</h1><p>The Rhine flows through <b>Basel</b>.</p><p>Second paragraph.</p>"
        "<noscript>enable js</noscript></body></html>",
        encoding="utf-8",
    )
    doc = read_document(path)
    assert doc.title == "Rhine Facts"
    assert "# The Rhine" in doc.text
    assert "The Rhine flows through Basel ." in doc.text or "The Rhine flows through Basel." in doc.text
    assert "Second paragraph." in doc.text
    for hidden in ("secret", "color:red", "enable js"):
        assert hidden not in doc.text


def test_html_without_title_uses_first_heading(tmp_path: Path) -> None:
    path = tmp_path / "untitled.htm"
    path.write_text("<h2>Only Heading</h2><div>text</div>", encoding="utf-8")
    assert read_document(path).title == "Only Heading"


def test_pdf_text_is_extracted(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    make_pdf(path, ["Kestrel Valley report", "The observatory opened in 1987."])
    doc = read_document(path)
    assert "observatory opened in 1987" in doc.text
    assert doc.frontmatter["pages"] == 1
    assert doc.id == "report"


def test_broken_pdf_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer garbage")
    with pytest.raises(DocumentError, match=r"broken\.pdf") as info:
        read_document(path)
    assert "\n" not in str(info.value)


def test_read_folder_reports_bad_files_and_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_files, "MAX_DOCUMENT_BYTES", 10_000)
    (tmp_path / "good.md").write_text("# Good\n\ntext\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.txt").write_text("plain text here\n", encoding="utf-8")
    (tmp_path / "binary.md").write_bytes(b"\x00\x01\x02 not text")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "broken.md").write_text("---\ntitle: [unclosed\n---\nbody\n", encoding="utf-8")
    (tmp_path / "unclosed.md").write_text("---\ntitle: x\nbody without end\n", encoding="utf-8")
    (tmp_path / "empty.md").write_text("  \n", encoding="utf-8")
    (tmp_path / "huge.txt").write_text("word " * 5_000, encoding="utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")  # unsupported suffix: not even tried
    docs, errors = read_folder(tmp_path)
    assert sorted(d.id for d in docs) == ["good", "sub-deep"]
    messages = {Path(e.path).name: e.message for e in errors}
    assert set(messages) == {"binary.md", "latin1.txt", "broken.md", "unclosed.md", "empty.md", "huge.txt"}
    assert "binary" in messages["binary.md"]
    assert "UTF-8" in messages["latin1.txt"]
    assert "frontmatter" in messages["broken.md"] and "frontmatter" in messages["unclosed.md"]
    assert "empty" in messages["empty.md"]
    assert "too large" in messages["huge.txt"]
    for name, message in messages.items():
        assert name in message and "\n" not in message


def test_read_folder_skips_hidden_and_kb_state(tmp_path: Path) -> None:
    (tmp_path / "visible.md").write_text("# V\n\nv\n", encoding="utf-8")
    for hidden in (".loracle", ".obsidian", ".git"):
        (tmp_path / hidden).mkdir()
        (tmp_path / hidden / "page.md").write_text("# H\n\nh\n", encoding="utf-8")
    (tmp_path / ".hidden.md").write_text("# H\n\nh\n", encoding="utf-8")
    docs, errors = read_folder(tmp_path)
    assert [d.id for d in docs] == ["visible"] and errors == []


def test_symlink_out_of_the_folder_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n\ns\n", encoding="utf-8")
    inside = tmp_path / "inside"
    inside.mkdir()
    (inside / "ok.md").write_text("# Ok\n\nok\n", encoding="utf-8")
    os.symlink(outside / "secret.md", inside / "link.md")
    docs, _ = read_folder(inside)
    assert [d.id for d in docs] == ["ok"]


def test_source_ids_are_safe_and_stable() -> None:
    assert source_id("notes/My Note.md") == "notes-my-note"
    assert source_id(Path("notes") / "My Note.md") == source_id("notes/My Note.md")
    assert source_id("../../etc/passwd.md") == "etc-passwd"
    assert source_id("CON.md") == "con-doc"
    assert source_id("東京/日本.md") == "東京-日本"
    long = source_id("x" * 300 + ".md")
    assert len(long) <= 80 and "/" not in long


def test_same_id_twice_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a b.md").write_text("# A\n\na\n", encoding="utf-8")
    (tmp_path / "a-b.md").write_text("# B\n\nb\n", encoding="utf-8")
    docs, errors = read_folder(tmp_path)
    assert len(docs) == 1 and len(errors) == 1 and "same id" in errors[0].message


def test_single_file_and_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "one.txt"
    path.write_text("hello\n", encoding="utf-8")
    docs, errors = read_folder(path)
    assert [d.id for d in docs] == ["one"] and not errors
    docs, errors = read_folder(tmp_path / "nope")
    assert not docs and "no such file" in errors[0].message
