"""Symbolic links in a knowledge base cloned from someone else: none makes the server read a file outside it.

The wiki's reading side (pages, graph, search) is link-safe in the library (see test_symlinks.py); here the same
is checked through the HTTP API. Adapters and eval results are refused by the server itself.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from loracle.eval.report import LATEST_JSON, LATEST_PNG, latest_dir
from loracle.kb import KBPaths
from tests.security.conftest import Client
from tests.security.kb import SECRET, secret_file


def outside(kb: KBPaths, name: str) -> Path:
    """A folder beside the knowledge base."""
    folder = kb.root.parent / name
    folder.mkdir()
    return folder


def body(response) -> str:
    return response.content.decode("utf-8", "replace")


def test_a_page_linking_outside_is_not_served(client: Client, kb: KBPaths) -> None:
    (kb.wiki / "concepts" / "h.md").symlink_to(secret_file(kb))
    folder = outside(kb, "elsewhere")
    (folder / "note.md").write_text(f"# Note\n\n{SECRET}\n")
    (kb.wiki / "linked").symlink_to(folder, target_is_directory=True)
    c = client()
    for path in ("/api/pages/concepts/h.md", "/api/pages/linked/note.md"):
        assert c.get(path).status_code == 404, path
    for path in ("/api/pages", "/api/graph", "/api/lint", f"/api/search?q={SECRET}"):
        response = c.get(path)
        assert response.status_code == 200, path
        # the search echoes its query back; what must not come out is anything read through the links
        shown = json.dumps(response.json().get("hits")) if "search" in path else body(response)
        assert SECRET not in shown, path
        assert "concepts/h.md" not in shown and "linked/note.md" not in shown, path


def test_a_link_inside_the_wiki_is_not_a_way_out(client: Client, kb: KBPaths) -> None:
    """Whatever the reading side does with links, this one stays inside the knowledge base."""
    (kb.wiki / "again.md").symlink_to(kb.wiki / "kestrel.md")
    response = client().get("/api/pages/again.md")
    assert response.status_code in (200, 404) and SECRET not in body(response)


def test_an_adapter_folder_linking_outside_is_not_served(client: Client, kb: KBPaths) -> None:
    folder = outside(kb, "foreign")
    shutil.copytree(kb.adapters / "alpha", folder / "adapter")
    (kb.adapters / "foreign").symlink_to(folder / "adapter", target_is_directory=True)
    (kb.adapters / "half").mkdir()  # a real folder whose weights file links outside
    shutil.copy(kb.adapters / "alpha" / "adapter_config.json", kb.adapters / "half")
    os.symlink(folder / "adapter" / "adapter_model.safetensors", kb.adapters / "half" / "adapter_model.safetensors")
    c = client()
    assert {"foreign", "half"}.isdisjoint(m["id"] for m in c.get("/v1/models").json()["data"])
    listing = c.get("/api/adapters").json()
    assert {"foreign", "half"}.isdisjoint(a["id"] for a in listing["adapters"])
    problems = {u["folder"]: u["problem"] for u in listing["unusable"]}
    assert "outside" in problems["foreign"] and "outside" in problems["half"]
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    for name in ("foreign", "half"):
        assert c.post("/v1/chat/completions", json={**chat, "model": name}).status_code == 404
        assert c.post("/v1/adapters/load", json={"id": name}).status_code == 404


def test_eval_results_linking_outside_are_not_served(client: Client, kb: KBPaths) -> None:
    folder = latest_dir(kb.state)
    for name in (LATEST_JSON, LATEST_PNG):
        (folder / name).unlink()
        (folder / name).symlink_to(secret_file(kb))
    c = client()
    for path in ("/api/eval", "/api/eval/chart.png"):
        response = c.get(path)
        assert response.status_code == 404 and SECRET not in body(response), path
