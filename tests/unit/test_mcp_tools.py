"""The MCP tools' work on a knowledge base, in process: which tools leave the model unloaded, how a page is
named, and where ingest may read from."""

from __future__ import annotations

from pathlib import Path

import pytest

from loracle.errors import LoracleError
from loracle.kb import KBPaths
from loracle.mcp_server.tools import KnowledgeBaseTools, PageNotFoundError
from tests.compiled_kb import CORRA, KESTREL, write_page


@pytest.fixture
def kb(tmp_path: Path) -> KBPaths:
    root = tmp_path / "kb"
    for page in (KESTREL, CORRA):
        write_page(root, page)
    (root / "loracle.toml").write_text('[model]\nbase = "no-such-model-dir"\n', encoding="utf-8")
    return KBPaths(root)


def test_reading_tools_never_load_the_model(kb: KBPaths) -> None:
    tools = KnowledgeBaseTools(kb)  # the configured model does not even exist: loading it would fail
    assert tools.search("Varn station", mode="bm25")["results"][0]["path"] == f"{CORRA.id}.md"
    assert len(tools.list_pages()["pages"]) == 2
    assert tools.read_page(f"{KESTREL.id}.md")["title"] == KESTREL.title
    assert tools.lint()["pages"] == 2
    assert tools.adapters() == {"adapters": [], "unusable": []}
    assert not tools.model_loaded


@pytest.mark.parametrize("name", [f"{CORRA.id}.md", CORRA.id, CORRA.title, CORRA.title.upper()])
def test_a_page_is_found_by_id_file_name_or_title(kb: KBPaths, name: str) -> None:
    assert KnowledgeBaseTools(kb).read_page(name)["id"] == f"{CORRA.id}.md"


@pytest.mark.parametrize("name", ["../loracle.toml", "/etc/passwd", "Nowhere"])
def test_anything_else_is_no_page(kb: KBPaths, name: str) -> None:
    with pytest.raises(PageNotFoundError, match="no such page"):
        KnowledgeBaseTools(kb).read_page(name)


def test_ingest_paths_stay_inside_unless_given_absolute_where_allowed(kb: KBPaths, tmp_path: Path) -> None:
    outside = tmp_path / "notes.md"
    local, served = KnowledgeBaseTools(kb), KnowledgeBaseTools(kb, allow_outside=False)
    assert local.ingest_path("raw/a.md") == kb.root / "raw" / "a.md"
    assert local.ingest_path(str(outside)) == outside
    with pytest.raises(LoracleError, match="leads outside the knowledge base"):
        local.ingest_path("raw/../../notes.md")
    with pytest.raises(LoracleError, match="outside the knowledge base; this server takes only paths inside it"):
        served.ingest_path(str(outside))
    assert served.ingest_path(str(kb.root / "raw" / "a.md")) == kb.root / "raw" / "a.md"
