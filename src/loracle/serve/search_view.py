"""Search over the wiki for the web page: the knowledge base's SearchIndex, kept in step with the wiki folder.

Before a search, the wiki folder is checked with one directory scan (names, sizes, mtimes); only when it
changed is `sync_folder` run, which reindexes just the changed pages.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loracle.search import SearchIndex, sync_folder
from loracle.serve.changes import folder_state


class SearchView:
    def __init__(self, db_path: Path, wiki: Path) -> None:
        self.db_path, self.wiki = db_path, wiki
        self._index: SearchIndex | None = None
        self._seen: tuple | None = None
        self._lock = threading.Lock()

    def search(self, query: str, n: int = 10) -> list[dict[str, Any]]:
        index = self._synced()
        return [asdict(hit) for hit in index.search(query, n)]

    def _synced(self) -> SearchIndex:
        with self._lock:
            if self._index is None:
                self._index = SearchIndex(self.db_path)
            state = folder_state(self.wiki)
            if state != self._seen and self.wiki.is_dir():
                sync_folder(self._index, self.wiki)
                self._seen = state
            return self._index

    def close(self) -> None:
        with self._lock:
            if self._index is not None:
                self._index.close()
                self._index = None
