"""HTML files -> Document: the <title> (else the first <h1>) and the readable text, without scripts or styles."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from loracle.documents import Document, slugify
from loracle.errors import DocumentError
from loracle.sources.files import read_text

_INVISIBLE = ("script", "style", "noscript", "template", "svg", "iframe", "head")
_BLOCKS = ("p", "div", "section", "article", "li", "tr", "br", "pre", "blockquote", "table", "ul", "ol", "dd", "dt")


def html_to_text(html: str) -> tuple[str | None, str]:
    """(title, text) of an HTML string; headings become markdown '#' lines so chunking sees them."""
    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(html, "html.parser")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else None
    for tag in soup(_INVISIBLE):
        tag.decompose()
    for level in range(1, 7):
        for tag in soup.find_all(f"h{level}"):
            text = tag.get_text(" ", strip=True)
            tag.replace_with(f"\n\n{'#' * level} {text}\n\n" if text else "")
    for tag in soup.find_all(_BLOCKS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    lines = [" ".join(line.split()) for line in soup.get_text().splitlines()]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if not title:
        first = re.search(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)
        title = first.group(1) if first else None
    return title, text


def read_html(path: Path, doc_id: str | None = None) -> Document:
    title, text = html_to_text(read_text(path))
    if not text:
        raise DocumentError(f"{path}: no readable text in the HTML")
    return Document.from_text(text, title or path.stem, path=path, doc_id=doc_id or slugify(path.stem))
