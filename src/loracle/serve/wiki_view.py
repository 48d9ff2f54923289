"""A read-only view of the wiki for the web page, on the wiki's own LinkGraph (Obsidian's link rules).

Pages are named by their path relative to wiki/ ("concepts/rhine.md"): ids from requests are only ever
looked up in the graph, never joined onto a path. The graph is rebuilt when a file in the folder changes.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from loracle.serve.changes import folder_state
from loracle.wiki.links import LinkGraph, PageInfo
from loracle.wiki.pages import parse_page


class WikiView:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._graph: LinkGraph | None = None
        self._seen: tuple | None = None
        self._lock = threading.Lock()

    def graph(self) -> LinkGraph:
        with self._lock:
            state = folder_state(self.folder)
            if self._graph is None or state != self._seen:
                self._graph = LinkGraph(self.folder)  # a missing folder is an empty graph
                self._seen = state
            return self._graph

    def pages(self) -> list[PageInfo]:
        return sorted(self.graph().pages.values(), key=lambda p: (p.rel.count("/"), p.title.lower()))

    def page(self, rel: str) -> PageInfo | None:
        return self.graph().pages.get(rel)

    def resolve(self, target: str) -> str | None:
        """The page a [[target]] names, or None (broken, or an attachment rather than a page)."""
        graph = self.graph()
        found = graph.resolve(target)
        return found if found in graph.pages else None

    def body(self, page: PageInfo) -> str:
        """The page's markdown without its frontmatter."""
        return parse_page(page.text).body

    def backlinks(self, rel: str) -> list[dict[str, str]]:
        graph = self.graph()
        sources = sorted(graph.backlinks().get(rel, set()))
        return [{"id": source, "title": graph.pages[source].title} for source in sources]

    def outgoing(self, rel: str) -> list[str]:
        graph = self.graph()
        targets = (dest for _link, dest in graph.outgoing(rel))
        return list(dict.fromkeys(t for t in targets if t in graph.pages and t != rel))

    def link_graph(self) -> dict[str, Any]:
        """Nodes (pages) and edges (resolved wikilinks between different pages) for the graph view."""
        graph = self.graph()
        nodes = [{"id": p.rel, "title": p.title, "type": p.type} for p in self.pages()]
        edges = [{"source": rel, "target": target} for rel in graph.pages for target in self.outgoing(rel)]
        return {"nodes": nodes, "edges": edges}
