"""`loracle mcp --kb KB` as an agent runs it: a subprocess spoken to over stdio by the official `mcp` SDK's client.

The knowledge base is tiny (tests/compiled_kb.py: two pages, each with its adapter, for the tiny model saved
as a folder) and its writer is the canned endpoint (tests/e2e/writer.py), so no test here loads the embedded
model but one (marked integration). Beside it lies a secret file that no answer may ever hold.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError

from tests.compiled_kb import CORRA, KESTREL, save_seeded_model, seeded_lm, write_compiled_kb, write_page

pytestmark = pytest.mark.e2e
T = TypeVar("T")
SECRET = "TOP-SECRET-mcp-7f3a"
TOOLS = {"search", "read_page", "list_pages", "query", "ask", "ingest", "lint", "adapters"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_seeded_model(tmp_path_factory.mktemp("tiny-seeded"))


def use_endpoint(kb: Path, endpoint: str) -> None:
    with (kb / "loracle.toml").open("a", encoding="utf-8") as config:
        for role in ("writer", "fast"):
            config.write(f'\n[llm.{role}]\nbase_url = "{endpoint}"\nmodel = "m"\n')


@pytest.fixture
def kb(tmp_path: Path, model_dir: Path, writer_endpoint: str) -> Path:
    """The compiled knowledge base; beside it secret.txt, and links from inside to it."""
    kb = write_compiled_kb(tmp_path / "kb", seeded_lm(), model=str(model_dir))
    use_endpoint(kb, writer_endpoint)
    (kb / "raw").mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text(f"{SECRET}\n", encoding="utf-8")
    (kb / "wiki" / "leak.md").symlink_to(secret)
    (kb / "raw" / "leak.md").symlink_to(secret)
    return kb


def session(kb: Path, script: Callable[[Client], Awaitable[T]]) -> T:
    """Run `script` against `loracle mcp --kb KB` started as a subprocess (the installed CLI's own code)."""
    env = {key: value for key, value in os.environ.items() if key != "LORACLE_KB"}
    command = ["-c", "from loracle.cli import main; main()", "mcp", "--kb", str(kb)]
    params = StdioServerParameters(command=sys.executable, args=command, env=env)

    async def main() -> T:
        async with Client(params, read_timeout_seconds=120) as client:
            return await script(client)

    return anyio.run(main)


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """A successful call's structured result."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return result.structured_content or json.loads(result.content[0].text)


async def error(client: Client, tool: str, **arguments: Any) -> str:
    """A failed call's message, which must be one line."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    text = result.content[0].text
    assert "\n" not in text and "Traceback" not in text, text
    return text


def test_reading_tools_and_page_resources(kb: Path) -> None:
    async def script(client: Client) -> dict[str, Any]:
        found: dict[str, Any] = {"tools": {t.name for t in (await client.list_tools()).tools}}
        found["search"] = await call(client, "search", query="Kestrel observatory founded", mode="bm25", n=3)
        found["pages"] = await call(client, "list_pages")
        found["page"] = await call(client, "read_page", page="Corra River")  # by title, as a [[link]] would
        found["lint"] = await call(client, "lint")
        found["adapters"] = await call(client, "adapters")
        found["resources"] = [str(r.uri) for r in (await client.list_resources()).resources]
        found["resource"] = (await client.read_resource(f"loracle://page/{KESTREL.id}.md")).contents[0]
        return found

    found = session(kb, script)
    assert found["tools"] == TOOLS
    assert found["search"]["results"][0]["path"] == f"{KESTREL.id}.md"
    assert {p["id"] for p in found["pages"]["pages"]} == {f"{KESTREL.id}.md", f"{CORRA.id}.md"}  # never leak.md
    assert found["page"]["id"] == f"{CORRA.id}.md" and CORRA.text in found["page"]["text"]
    assert found["page"]["frontmatter"] == {"title": CORRA.title}
    assert found["lint"]["pages"] == 2 and "findings" in found["lint"]
    listed = {row["id"]: row for row in found["adapters"]["adapters"]}
    assert set(listed) == {KESTREL.id, CORRA.id} and not listed[KESTREL.id]["stale"]
    assert sorted(found["resources"]) == [f"loracle://page/{CORRA.id}.md", f"loracle://page/{KESTREL.id}.md"]
    assert found["resource"].mime_type == "text/markdown" and KESTREL.text in found["resource"].text


def test_answering_and_ingesting_tools(kb: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# Corra notes\n\nThe Corra River flows past the Kestrel Valley Observatory.\n", encoding="utf-8")

    async def script(client: Client) -> dict[str, Any]:
        return {
            "ask": await call(client, "ask", question=KESTREL.keys[0], max_tokens=8),
            "query": await call(client, "query", question="What powers the Varn station?", n=2),
            "ingest": await call(client, "ingest", paths=[str(notes)]),
            "again": await call(client, "ingest"),  # no paths: everything in raw/, now unchanged
            "adapters": await call(client, "adapters"),
        }

    found = session(kb, script)
    ask = found["ask"]
    assert ask["answered_from"] == "adapters" and ask["text"]
    assert [d["adapter"] for d in ask["documents"]] == [KESTREL.id]
    assert found["query"]["text"] and found["query"]["citations"]
    assert found["ingest"]["counts"]["added"] == 1 and (kb / "raw" / "notes.md").is_file()
    assert found["again"]["counts"]["unchanged"] == 1 and found["again"]["counts"]["added"] == 0
    assert {r["id"] for r in found["adapters"]["adapters"] if r["loaded"]} == {KESTREL.id}


@pytest.mark.integration
def test_ask_without_adapters_answers_from_retrieval_with_the_embedded_model(tmp_path: Path) -> None:
    """The one test here that loads the embedded model (the knowledge base's default): no adapters, so `ask`
    answers from retrieval over the wiki, says so, and cites the page the answer is in."""
    kb = tmp_path / "kb"
    for page in (KESTREL, CORRA):
        write_page(kb, page)
    (kb / "loracle.toml").write_text("", encoding="utf-8")
    answer = session(kb, lambda client: call(client, "ask", question="What powers the Varn station?"))
    assert answer["answered_from"] == "retrieval" and "no compiled adapters" in answer["note"]
    assert answer["citations"][0]["page"] == f"{CORRA.id}.md"
    assert "corra" in answer["text"].lower(), answer["text"]


BAD_INPUTS = [
    ("search", {"query": ""}, "search: query: String should have at least 1 character"),
    ("search", {"query": "x", "mode": "grep"}, "search: mode: Input should be 'hybrid', 'bm25' or 'vector'"),
    ("read_page", {}, "read_page: page: Field required"),
    ("read_page", {"page": "no such thing"}, "read_page: no such thing: no such page in the wiki"),
    ("list_pages", {"type": 7}, "list_pages: type: Input should be a valid string"),
    ("query", {"question": "Varn?", "n": 0}, "query: n: Input should be greater than or equal to 1"),
    ("ask", {"question": "Varn?", "max_tokens": -1}, "ask: max_tokens: Input should be greater than or equal to 1"),
    ("ingest", {"paths": "notes.md"}, "ingest: paths: Input should be a valid list"),
    ("ingest", {"paths": ["raw/missing.md"]}, "ingest: nothing ingested: "),
    ("lint", {"fix": "maybe"}, "lint: fix: Input should be a valid boolean"),
    ("adapters", {"id": "../x"}, "adapters: id: not an argument of this tool (it takes no arguments)"),
    ("compile", {}, "Unknown tool: compile"),
]


def test_bad_inputs_and_traversal_get_one_line_each_and_the_server_goes_on(kb: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.md").write_text("# Outside\n\nNot part of it.\n", encoding="utf-8")

    async def script(client: Client) -> dict[str, Any]:
        found: dict[str, Any] = {"bad": [await error(client, tool, **args) for tool, args, _ in BAD_INPUTS]}
        found["traversal"] = [
            await error(client, "read_page", page="../loracle.toml"),
            await error(client, "read_page", page="leak.md"),
            await error(client, "ingest", paths=["../outside.md"]),
            await error(client, "ingest", paths=["raw/leak.md"]),
        ]
        found["resources"] = []
        for uri in ("loracle://page/../loracle.toml", "loracle://page/%2E%2E/secret.txt", "loracle://page/leak.md"):
            with pytest.raises(MCPError) as refused:
                await client.read_resource(uri)
            found["resources"].append(refused.value.error.message)
        found["still"] = await call(client, "list_pages")
        return found

    found = session(kb, script)
    for (_tool, _args, expected), got in zip(BAD_INPUTS, found["bad"], strict=True):
        assert got.startswith(expected), (expected, got)
    read_up, read_link, ingest_up, ingest_link = found["traversal"]
    assert read_up.startswith("read_page: ../loracle.toml: no such page") and "leak.md: no such page" in read_link
    assert "leads outside the knowledge base" in ingest_up and "leads outside the knowledge base" in ingest_link
    assert all(message.strip() and "\n" not in message for message in found["resources"])
    assert not any(SECRET in json.dumps(part) for part in found.values())
    assert len(found["still"]["pages"]) == 2
    assert not (kb / "raw" / "outside.md").exists()
