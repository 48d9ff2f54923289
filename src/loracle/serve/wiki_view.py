"""A read-only view of the wiki folder for the web page: pages, wikilink resolution, backlinks, graph."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from loracle.documents import Document, slugify
from loracle.errors import LoracleError
from loracle.sources.files import read_document

log = logging.getLogger(__name__)


class WikiView:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._docs: dict[str, Document] | None = None

    def _load(self) -> dict[str, Document]:
        if self._docs is None:
            docs: dict[str, Document] = {}
            files = sorted(self.folder.glob("*.md")) if self.folder.is_dir() else []
            for path in files:
                try:
                    doc = read_document(path, slugify(path.stem))
                except LoracleError as exc:
                    log.warning("%s", exc)  # one bad page does not hide the others
                    continue
                docs[doc.id] = doc
            self._docs = docs
        return self._docs

    def pages(self) -> list[Document]:
        return sorted(self._load().values(), key=lambda d: d.title.lower())

    def page(self, page_id: str) -> Document | None:
        return self._load().get(page_id) if page_id == slugify(page_id) else None

    def resolve(self, target: str) -> str | None:
        """The id of the page a [[target]] names (by id or by title), or None."""
        docs = self._load()
        slug = slugify(target)
        if slug in docs:
            return slug
        lowered = target.strip().lower()
        return next((d.id for d in docs.values() if d.title.lower() == lowered), None)

    def backlinks(self, page_id: str) -> list[dict[str, str]]:
        return [
            {"id": d.id, "title": d.title}
            for d in self.pages()
            if d.id != page_id and any(self.resolve(link) == page_id for link in d.links)
        ]

    def adapter_stale(self, manifest: dict[str, Any]) -> bool | None:
        """Whether a page's adapter was compiled from text the page no longer has; None when it can't tell
        (a raw document's, an aggregate of linked pages, or a merge)."""
        aggregate = len(manifest.get("inputs") or []) > 1
        if manifest.get("source") != "wiki" or aggregate or not manifest.get("content_hash"):
            return None
        doc = self.page(str(manifest.get("document_id", "")))
        return None if doc is None else doc.hash != manifest["content_hash"]

    def graph(self) -> dict[str, Any]:
        pages = self.pages()
        nodes = [{"id": d.id, "title": d.title} for d in pages]
        edges = []
        for d in pages:
            for target in dict.fromkeys(t for t in (self.resolve(link) for link in d.links) if t and t != d.id):
                edges.append({"source": d.id, "target": target})
        return {"nodes": nodes, "edges": edges}
