"""Read one file into a `Document`, refusing what isn't readable text with a one-line error."""

from __future__ import annotations

from pathlib import Path

import yaml

from loracle.documents import Document, slugify
from loracle.errors import DocumentError

MAX_DOCUMENT_BYTES = 20_000_000


def read_text(path: Path) -> str:
    """The file's text as UTF-8 (a BOM is dropped); missing, binary, invalid or empty files are refused."""
    if not path.exists():
        raise DocumentError(f"{path}: no such file")
    if not path.is_file():
        raise DocumentError(f"{path}: not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{path}: unreadable ({exc.strerror})") from exc
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"{path}: too large ({len(data):,} bytes; limit {MAX_DOCUMENT_BYTES:,})")
    if b"\x00" in data[:8192]:
        raise DocumentError(f"{path}: binary file, not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{path}: not valid UTF-8 (byte {exc.start})") from exc
    if not text.strip():
        raise DocumentError(f"{path}: empty")
    return text


def split_frontmatter(text: str, path: Path) -> tuple[dict, str]:
    """YAML frontmatter between leading '---' lines, and the body after it."""
    if not text.startswith("---"):
        return {}, text
    lines = text.splitlines(keepends=True)
    for index in range(1, len(lines)):
        if lines[index].strip() in ("---", "..."):
            raw, body = "".join(lines[1:index]), "".join(lines[index + 1 :])
            try:
                meta = yaml.safe_load(raw) if raw.strip() else {}
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f" at line {mark.line + 2}" if mark is not None else ""
                raise DocumentError(f"{path}: broken frontmatter{where}") from exc
            if meta is None:
                meta = {}
            if not isinstance(meta, dict):
                raise DocumentError(f"{path}: frontmatter is not a mapping")
            return meta, body
    raise DocumentError(f"{path}: frontmatter opened with '---' is never closed")


MARKDOWN_SUFFIXES = (".md", ".markdown")
TEXT_SUFFIXES = (".txt", ".text", ".rst")
HTML_SUFFIXES = (".html", ".htm", ".xhtml")
PDF_SUFFIXES = (".pdf",)
SUPPORTED_SUFFIXES = MARKDOWN_SUFFIXES + TEXT_SUFFIXES + HTML_SUFFIXES + PDF_SUFFIXES


def read_document(path: Path, doc_id: str | None = None) -> Document:
    """A markdown, text, HTML or PDF file as a Document (markdown title: frontmatter, first heading, file name).

    `doc_id` defaults to the slug of the file name; `read_folder` passes one made from the relative path.
    """
    suffix = path.suffix.lower()
    if suffix in HTML_SUFFIXES:
        from loracle.sources.html import read_html

        return read_html(path, doc_id)
    if suffix in PDF_SUFFIXES:
        from loracle.sources.pdf import read_pdf

        return read_pdf(path, doc_id)
    text = read_text(path)
    meta: dict = {}
    body = text
    if suffix in MARKDOWN_SUFFIXES:
        meta, body = split_frontmatter(text, path)
        if not body.strip():
            raise DocumentError(f"{path}: empty (frontmatter only)")
    title = str(meta.get("title") or _first_heading(body) or path.stem)
    return Document.from_text(body.strip(), title, path=path, frontmatter=meta, doc_id=doc_id or slugify(path.stem))


def _first_heading(body: str) -> str | None:
    for line in body.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return None
