"""`loracle mcp --http`: the streamable HTTP transport keeps `loracle serve`'s rules. With no token, the SDK's
client on loopback is served and a foreign Host or a foreign page's request is refused; with a token, every
request needs it. Refusing to listen beyond this machine without a token is checked on the real command."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from loracle.config import ServeConfig
from loracle.kb import KBPaths
from loracle.mcp_server import KnowledgeBaseTools, create_server
from loracle.mcp_server.http import MCP_PATH, http_app
from loracle.serve.launch import background_server
from tests.compiled_kb import KESTREL, write_page
from tests.crash.runner import ForkedCli, run

pytestmark = pytest.mark.e2e
TOKEN = "mcp-s3cret"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
ACCEPT = {"Accept": "application/json, text/event-stream"}


@pytest.fixture
def kb(tmp_path: Path) -> KBPaths:
    root = tmp_path / "kb"
    root.mkdir()
    (root / "loracle.toml").write_text("", encoding="utf-8")
    write_page(root, KESTREL)
    return KBPaths(root)


@pytest.fixture
def open_url(kb: KBPaths) -> Iterator[str]:
    with background_server(http_app(create_server(KnowledgeBaseTools(kb)), ServeConfig(), token="")) as url:
        yield url + MCP_PATH


@pytest.fixture
def token_url(kb: KBPaths) -> Iterator[str]:
    with background_server(http_app(create_server(KnowledgeBaseTools(kb)), ServeConfig(), token=TOKEN)) as url:
        yield url + MCP_PATH


def page_ids(url: str, headers: dict[str, str] | None = None) -> list[str]:
    """list_pages through the SDK's own streamable HTTP client."""

    async def main() -> list[str]:
        async with (
            httpx2.AsyncClient(headers=headers or {}) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            result = await client.call_tool("list_pages", {})
            return [page["id"] for page in result.structured_content["pages"]]

    return anyio.run(main)


def test_without_a_token_loopback_clients_are_served_and_foreign_requests_refused(open_url: str) -> None:
    assert page_ids(open_url) == [f"{KESTREL.id}.md"]
    rebound = httpx.post(open_url, json=INITIALIZE, headers={**ACCEPT, "Host": "evil.example"})
    assert rebound.status_code == 403 and "Host 'evil.example' refused" in rebound.json()["error"]["message"]
    cross_site = httpx.post(open_url, json=INITIALIZE, headers={**ACCEPT, "Origin": "https://evil.example"})
    assert cross_site.status_code == 403
    assert httpx.post(open_url, json=INITIALIZE, headers=ACCEPT).status_code == 200


def test_with_a_token_every_request_needs_it(token_url: str) -> None:
    assert httpx.post(token_url, json=INITIALIZE, headers=ACCEPT).status_code == 401
    wrong = httpx.post(token_url, json=INITIALIZE, headers={**ACCEPT, "Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert page_ids(token_url, {"Authorization": f"Bearer {TOKEN}"}) == [f"{KESTREL.id}.md"]
    # a token makes other Host names fine (it is what `--host 0.0.0.0` needs), the token still required
    named = httpx.post(
        token_url, json=INITIALIZE, headers={**ACCEPT, "Host": "kb.example", "Authorization": "Bearer x"}
    )
    assert named.status_code == 401


def test_listening_beyond_this_machine_needs_a_token(forked_cli: ForkedCli, kb: KBPaths) -> None:
    done = run(forked_cli, "mcp", "--http", "--host", "0.0.0.0", "--port", "0", "--kb", kb.root)
    assert done.returncode == 1
    assert "refusing to listen beyond this machine without a token" in done.output
    assert "Traceback" not in done.output
