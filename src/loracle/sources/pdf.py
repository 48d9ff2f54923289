"""PDF files -> Document: the text of every page (pypdf), pages separated by blank lines."""

from __future__ import annotations

import logging
from pathlib import Path

from loracle.documents import Document, slugify
from loracle.errors import DocumentError
from loracle.sources.files import MAX_DOCUMENT_BYTES


def read_pdf(path: Path, doc_id: str | None = None) -> Document:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    _check_size(path)
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # pypdf warns loudly about harmless quirks
    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            raise DocumentError(f"{path}: encrypted PDF")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except DocumentError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise DocumentError(f"{path}: not a readable PDF ({type(exc).__name__}: {exc})") from exc
    text = "\n\n".join(p for p in pages if p)
    if not text.strip():
        raise DocumentError(f"{path}: PDF has no extractable text (scanned images?)")
    title = str(meta_title).strip() or _first_line(text) or path.stem
    return Document.from_text(
        text, title, path=path, frontmatter={"pages": len(pages)}, doc_id=doc_id or slugify(path.stem)
    )


def _check_size(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DocumentError(f"{path}: unreadable ({exc.strerror})") from exc
    if size > MAX_DOCUMENT_BYTES * 5:
        raise DocumentError(f"{path}: too large ({size:,} bytes; limit {MAX_DOCUMENT_BYTES * 5:,} for PDFs)")
    if size == 0:
        raise DocumentError(f"{path}: empty")


def _first_line(text: str) -> str | None:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:120]
    return None
