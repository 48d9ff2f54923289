"""manifest.json: what an adapter folder was made from, by what, for which base model, and at what cost."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loracle.errors import AdapterError, validation_problem
from loracle.model.adapters import MANIFEST


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class AdapterManifest(BaseModel):
    """The record beside every adapter's weights. Learners may add their own keys (kept as extras)."""

    model_config = ConfigDict(extra="allow")

    id: str
    #: the Document id it was compiled from (empty for merges)
    document_id: str = ""
    title: str = ""
    #: content hash of the text it was compiled from (for --aggregate: of the page plus its linked pages)
    content_hash: str = ""
    #: "raw", "wiki", "merge" or "import": compile removes only adapters of its own source whose documents are gone
    source: str = ""
    #: ids of the documents that went into it (the page and its linked pages; the adapters of a merge)
    inputs: list[str] = Field(default_factory=list)
    learner: str = ""
    #: texts saying what questions the adapter answers (the cues it was trained on, the document's distinct
    #: words): what `loracle ask --kb` routes a question by. Empty for older adapters and merges, which are routed
    #: by their title and, while the knowledge base holds it, their document's words.
    routing_keys: list[str] = Field(default_factory=list)
    base_model: str = ""
    base_fingerprint: str = ""
    created: str = Field(default_factory=now_iso)
    #: seconds per phase (read, compile, write, ...)
    timings: dict[str, float] = Field(default_factory=dict)
    size_bytes: int = 0

    @classmethod
    def read(cls, folder: Path) -> AdapterManifest:
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise AdapterError(f"{folder}: no {MANIFEST}") from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise AdapterError(f"{path}: not valid JSON ({exc})") from exc
        if isinstance(data, dict):
            data.setdefault("id", folder.name)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise AdapterError(f"{path}: {validation_problem(exc)}") from exc

    def write(self, folder: Path) -> None:
        """Write into a folder that is not visible yet (a staging folder): callers publish it atomically."""
        (folder / MANIFEST).write_text(self.model_dump_json(indent=2), encoding="utf-8")

    def updated(self, **changes: Any) -> AdapterManifest:
        return self.model_copy(update=changes)
