from pathlib import Path

import pytest

from loracle.documents import Document, extract_wikilinks, slugify
from loracle.errors import DocumentError
from loracle.sources import read_document


@pytest.mark.parametrize(
    "name",
    ["../../x", "CON", "con.txt", "a/b\\c", "x" * 300, "..", "", "   ", "日本語のページ", "NUL", "a\x00b"],
)
def test_slugify_is_a_safe_file_name(name: str) -> None:
    slug = slugify(name)
    assert slug and len(slug) <= 80
    assert "/" not in slug and "\\" not in slug and ".." not in slug and "\x00" not in slug
    assert slug.split(".")[0] not in {"con", "nul", "prn", "aux"}


def test_slugify_keeps_cjk_and_distinguishes_long_names() -> None:
    assert slugify("日本語のページ") == "日本語のページ"
    assert slugify("a" * 200 + "1") != slugify("a" * 200 + "2")
    assert slugify("Hello, World!") == "hello-world"


def test_wikilinks_all_forms() -> None:
    text = "See [[Page]], [[Other|label]], [[Third#Heading]] and [[Page]] again."
    assert extract_wikilinks(text) == ["Page", "Other", "Third"]


def test_document_from_text_derives_fields() -> None:
    doc = Document.from_text("Body with [[Link]].", "My Title")
    assert doc.id == "my-title" and doc.links == ("Link",) and len(doc.hash) == 64


def test_read_document_markdown_frontmatter(tmp_path: Path) -> None:
    path = tmp_path / "note.md"
    path.write_text("---\ntitle: Hello\ntags: [a]\n---\n# Heading\nBody\n", encoding="utf-8")
    doc = read_document(path)
    assert doc.title == "Hello" and doc.frontmatter["tags"] == ["a"] and doc.text.startswith("# Heading")
    assert doc.id == "note"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"\x00\x01\x02binary", "binary"),
        (b"caf\xe9 au lait", "not valid UTF-8"),
        (b"---\ntitle: [unclosed\n---\nbody", "broken frontmatter"),
        (b"---\ntitle: x\nbody never closed", "never closed"),
        (b"---\n- a list\n---\nbody", "not a mapping"),
    ],
)
def test_bad_files_give_one_line_naming_the_file(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad.md"
    path.write_bytes(content)
    with pytest.raises(DocumentError) as info:
        read_document(path)
    message = str(info.value)
    assert str(path) in message and problem in message and "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="no such file"):
        read_document(tmp_path / "nope.md")
