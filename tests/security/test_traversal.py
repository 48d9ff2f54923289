"""Path traversal in every id the API takes: adapter ids (model names, stacked adapters, load/unload, the
learner's adapters), page ids and static paths. None reaches the secret file beside the knowledge base."""

from __future__ import annotations

import pytest

from loracle.kb import KBPaths
from tests.security.conftest import Client
from tests.security.kb import SECRET

ADAPTER_IDS = [
    "../kb/adapters/alpha",
    "..",
    "../secret.txt",
    "alpha/../beta",
    "/etc/passwd",
    "%2e%2e%2fsecret.txt",
    "..\\secret.txt",
    "alpha\x00",
    "ALPHA",
    "Bad Name",  # a folder that exists, with a name that is no id
    "alpha/",
    "~",
]
PAGE_PATHS = [
    "../secret.txt",
    "..%2fsecret.txt",
    "..%2Fsecret.txt",
    "%2e%2e/secret.txt",
    "%2e%2e%2fsecret.txt",
    "..%5csecret.txt",
    "concepts/../../secret.txt",
    "%2fetc%2fpasswd",
    "/etc/passwd",
    "....//secret.txt",
    "index.md%00.txt",
    "../loracle.toml",
    "../../kb/wiki/index.md",
]
STATIC_PATHS = [
    "/static/../../../../secret.txt",
    "/static/%2e%2e/%2e%2e/%2e%2e/secret.txt",
    "/static/..%2f..%2f..%2fsecret.txt",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/..%5c..%5capp.py",
]


def leaks(response) -> bool:
    return SECRET.encode() in response.content or b"root:x:0:0" in response.content


@pytest.mark.parametrize("adapter_id", ADAPTER_IDS)
def test_adapter_ids(client: Client, kb: KBPaths, adapter_id: str) -> None:
    c = client()
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    requests = [
        ("/v1/chat/completions", {**chat, "model": adapter_id}),
        ("/v1/chat/completions", {**chat, "model": f"tiny:{adapter_id}"}),
        ("/v1/chat/completions", {**chat, "model": "tiny", "adapters": [{"id": adapter_id}]}),
        ("/v1/completions", {"model": adapter_id, "prompt": "hi", "max_tokens": 2}),
        ("/v1/adapters/load", {"id": adapter_id}),
        ("/v1/adapters/unload", {"id": adapter_id}),
        ("/api/ask", {"question": "hi", "adapters": [{"id": adapter_id}]}),
    ]
    for path, body in requests:
        response = c.post(path, json=body)
        assert response.status_code in (400, 404), (path, body, response.status_code)
        assert not leaks(response) and str(kb.root) not in response.text
    assert not c.get("/api/info").json()["knowledge_base"].startswith("/")


@pytest.mark.parametrize("page", PAGE_PATHS)
def test_page_ids(client: Client, kb: KBPaths, page: str) -> None:
    response = client().get(f"/api/pages/{page}")
    assert response.status_code == 404 and not leaks(response), page
    assert str(kb.root) not in response.text


@pytest.mark.parametrize("path", STATIC_PATHS)
def test_static_paths(client: Client, path: str) -> None:
    response = client().get(path)
    assert response.status_code == 404 and not leaks(response), (path, response.status_code)


def test_real_ids_still_work(client: Client) -> None:
    c = client()
    assert "powers the" in c.get("/api/pages/concepts/corra.md").json()["raw"]
    assert c.get("/static/app.js").status_code == 200
    assert c.post("/v1/adapters/load", json={"id": "alpha"}).status_code == 200
    chat = {"model": "tiny:alpha", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert c.post("/v1/chat/completions", json=chat).status_code == 200
