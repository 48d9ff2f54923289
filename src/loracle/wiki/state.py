"""What loracle remembers about a knowledge base's wiki, in .loracle/wiki-state.json (rebuildable).

Per source: its content hash, its summary page and the pages it contributed to, so unchanged sources
are skipped and a changed or removed one can be followed to its pages. Per page section: the text
loracle last wrote there, so a later update can tell a person's edit from its own and keep the edit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from filelock import FileLock, Timeout
from pydantic import BaseModel, Field, ValidationError

from loracle.atomic import write_text_atomic
from loracle.errors import LoracleError
from loracle.kb import KBPaths

STATE_FILE = "wiki-state.json"
LOCK_FILE = "wiki.lock"


class SourceRecord(BaseModel):
    hash: str
    title: str
    page: str  # the summary page, relative to wiki/
    pages: list[str] = Field(default_factory=list)  # entity/concept pages it contributed lines to
    ingested: str = ""  # ISO date
    removed: bool = False


class WikiState(BaseModel):
    version: int = 1
    sources: dict[str, SourceRecord] = Field(default_factory=dict)  # key: path relative to the KB root
    #: page -> section heading -> source key (or "*" for a whole section) -> lines loracle wrote
    written: dict[str, dict[str, dict[str, list[str]]]] = Field(default_factory=dict)
    #: pages changed since index.md was last rebuilt (set in the same write that records a source)
    index_pending: bool = False

    def lines_written(self, page: str, heading: str, source: str) -> list[str]:
        return self.written.get(page, {}).get(heading, {}).get(source, [])

    def record(self, page: str, heading: str, source: str, lines: list[str]) -> None:
        by_source = self.written.setdefault(page, {}).setdefault(heading, {})
        if lines:
            by_source[source] = lines
        else:
            by_source.pop(source, None)


def load_state(kb: KBPaths) -> WikiState:
    path = kb.state / STATE_FILE
    if not path.exists():
        return WikiState()
    try:
        return WikiState.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, ValidationError) as exc:
        raise LoracleError(f"{path}: unreadable wiki state ({type(exc).__name__}); move it aside to rebuild") from exc


def save_state(kb: KBPaths, state: WikiState) -> None:
    write_text_atomic(kb.state / STATE_FILE, state.model_dump_json(indent=1))


@contextmanager
def wiki_lock(kb: KBPaths, timeout_s: float = 600.0) -> Iterator[None]:
    """One writer at a time per knowledge base (a second ingest waits, then works on the first one's result)."""
    kb.state.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(kb.state / LOCK_FILE))
    try:
        lock.acquire(timeout=timeout_s)
    except Timeout as exc:
        raise LoracleError(f"{kb.state / LOCK_FILE}: another loracle process holds the wiki for too long") from exc
    try:
        yield
    finally:
        lock.release()


def as_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(x) for x in value]
    return [str(value)] if value else []
