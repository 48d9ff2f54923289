"""The one data type that flows through loracle: a `Document`, plus safe ids made from untrusted names."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WIKILINK_RE = re.compile(r"\[\[([^\[\]|#]+)(?:#([^\[\]|]*))?(?:\|([^\[\]]*))?\]\]")
_WINDOWS_RESERVED = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(10)),
    *(f"lpt{i}" for i in range(10)),
}
MAX_SLUG_LEN = 80


def content_hash(text: str) -> str:
    """A stable hash of a document's text (sha256 hex)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def slugify(name: str, max_len: int = MAX_SLUG_LEN) -> str:
    """A safe, stable file-name stem made from an untrusted title or path.

    Keeps letters of any script (so CJK titles stay readable), lowercases, turns everything else into
    single dashes, refuses `..`, path separators and Windows device names, and bounds the length
    (long names keep a short hash suffix so two long titles never collide).
    """
    text = unicodedata.normalize("NFKC", name).strip().lower()
    text = re.sub(r"[^\w]+", "-", text, flags=re.UNICODE).strip("-_")
    text = re.sub(r"-{2,}", "-", text)
    if not text:
        text = "untitled-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    if text.split(".")[0] in _WINDOWS_RESERVED:
        text = f"{text}-doc"
    if len(text) > max_len:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
        text = f"{text[: max_len - 9].rstrip('-')}-{digest}"
    return text


def extract_wikilinks(text: str) -> list[str]:
    """Targets of [[Page]], [[Page|label]] and [[Page#Heading]] links, in order, without duplicates."""
    seen: dict[str, None] = {}
    for match in WIKILINK_RE.finditer(text):
        target = match.group(1).strip()
        if target:
            seen.setdefault(target, None)
    return list(seen)


@dataclass(frozen=True)
class Document:
    """A source or wiki page: what sources produce, the wiki writes, learners learn and adapters key on."""

    id: str
    title: str
    text: str
    path: Path | None = None
    frontmatter: dict[str, Any] = field(default_factory=dict)
    links: tuple[str, ...] = ()
    hash: str = ""

    @classmethod
    def from_text(
        cls,
        text: str,
        title: str,
        *,
        path: Path | None = None,
        frontmatter: dict[str, Any] | None = None,
        doc_id: str | None = None,
    ) -> Document:
        """Build a Document, deriving its id, links and hash from the title and text."""
        return cls(
            id=doc_id or slugify(title),
            title=title,
            text=text,
            path=path,
            frontmatter=dict(frontmatter or {}),
            links=tuple(extract_wikilinks(text)),
            hash=content_hash(text),
        )
