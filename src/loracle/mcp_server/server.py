"""The MCP server: a knowledge base's tools and wiki pages, on the official `mcp` SDK (MCPServer).

Tools: search, read_page, list_pages, query, ask, ingest, lint, adapters (their work is in tools.py). Pages
are resources `loracle://page/<id>`, listed one per page. Arguments are checked against each tool's schema;
any problem (a bad argument, a loracle error, even an unexpected crash) comes back as an MCP error result
with one line, and the server goes on.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal
from urllib.parse import quote

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError, UnexpectedToolError
from mcp_types import Resource, ToolAnnotations
from pydantic import Field, ValidationError

from loracle.errors import LoracleError, validation_problem
from loracle.mcp_server.tools import KnowledgeBaseTools, PageNotFoundError

PAGE_URI = "loracle://page/{+page_id}"
INSTRUCTIONS = (
    "A loracle knowledge base: an LLM-written markdown wiki, with per-document LoRA adapters. "
    "Find pages with search or list_pages and read them with read_page (or the loracle://page/<id> resources); "
    "query answers from the wiki with citations; ask answers from the adapters (or retrieval without them)."
)
log = logging.getLogger("loracle.mcp")

Question = Annotated[str, Field(min_length=1, max_length=4000, description="The question.")]
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


class LoracleMCP(MCPServer):
    """MCPServer whose tool errors are one line each (the tool, then the problem), and whose resources are the
    wiki's pages as they are now."""

    def __init__(self, tools: KnowledgeBaseTools) -> None:
        super().__init__("loracle", instructions=INSTRUCTIONS, log_level="WARNING")
        self.tools = tools

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        tool = next((t for t in await self.list_tools() if t.name == name), None)
        known = tool.input_schema.get("properties", {}) if tool is not None else {}
        unknown = sorted(set(arguments) - set(known)) if tool is not None else []
        if unknown:  # the SDK would drop it silently: a misspelt argument would quietly take its default
            takes = ", ".join(known) or "no arguments"
            raise ToolError(f"{name}: {unknown[0][:60]}: not an argument of this tool (it takes {takes})")
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            raise ToolError(one_line(name, exc)) from exc

    async def list_resources(self) -> list[Resource]:
        pages = self.tools.list_pages()["pages"]
        return [
            Resource(uri=page_uri(p["id"]), name=p["id"], title=p["title"], mime_type="text/markdown") for p in pages
        ]


def page_uri(page_id: str) -> str:
    return "loracle://page/" + quote(page_id, safe="/")


def one_line(tool: str, exc: ToolError) -> str:
    """The line an MCP client reads for a failed call."""
    cause = exc.__cause__
    if isinstance(cause, ValidationError):
        return f"{tool}: {validation_problem(cause, 'arguments')}"
    if isinstance(cause, LoracleError):
        return f"{tool}: {cause}"
    if isinstance(exc, UnexpectedToolError) and cause is not None:
        log.error("tool %s failed", tool, exc_info=cause)
        return f"{tool}: internal error ({type(cause).__name__}: {str(cause)[:200]})"
    return str(exc).splitlines()[0] if str(exc) else f"{tool}: failed"


def create_server(tools: KnowledgeBaseTools) -> LoracleMCP:
    """The MCP server over `tools`' knowledge base."""
    server = LoracleMCP(tools)

    @server.tool(annotations=READ_ONLY)
    def search(
        query: Annotated[str, Field(min_length=1, max_length=500, description="Words, a phrase or a question.")],
        n: Annotated[int, Field(ge=1, le=50, description="How many pages.")] = 10,
        mode: Annotated[Literal["hybrid", "bm25", "vector"], Field(description="bm25 needs no embeddings.")] = "hybrid",
    ) -> dict[str, Any]:
        """Search the wiki's pages (titles, aliases, tags, headings and text by BM25, plus meaning by vectors)."""
        return tools.search(query, n, mode)

    @server.tool(annotations=READ_ONLY)
    def read_page(
        page: Annotated[str, Field(min_length=1, max_length=500, description="A page id, title or alias.")],
    ) -> dict[str, Any]:
        """One wiki page: its markdown, frontmatter, outgoing links and backlinks. `page` is an id from
        list_pages or search (its path under wiki/), or what a [[wikilink]] to it would say."""
        return tools.read_page(page)

    @server.tool(annotations=READ_ONLY)
    def list_pages(
        type: Annotated[
            str | None, Field(max_length=40, description="Only pages of this type (entity, concept, source, ...).")
        ] = None,
    ) -> dict[str, Any]:
        """Every wiki page: id, title, type and how many links it has."""
        return tools.list_pages(type)

    @server.tool(annotations=READ_ONLY)
    def query(
        question: Question, n: Annotated[int, Field(ge=1, le=12, description="Pages to read.")] = 4
    ) -> dict[str, Any]:
        """Answer from the wiki: the best pages are read by the writer model, which answers; the pages and the
        raw source lines behind them are cited."""
        return tools.query(question, n)

    @server.tool(annotations=READ_ONLY)
    def ask(
        question: Question,
        max_tokens: Annotated[int | None, Field(ge=1, le=2048, description="Longest answer, in tokens.")] = None,
    ) -> dict[str, Any]:
        """Answer from the knowledge base's compiled adapters (routed to the documents that answer it, named in
        the result); a knowledge base with no usable adapters answers from retrieval instead
        (`answered_from` says which)."""
        return tools.ask(question, max_tokens)

    @server.tool(annotations=ToolAnnotations(destructive_hint=False, open_world_hint=False))
    def ingest(
        paths: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=4096)]],
            Field(max_length=64, description="Files or folders; relative ones are inside the knowledge base."),
        ] = [],  # noqa: B006  (read only; the schema shows the default)
    ) -> dict[str, Any]:
        """Add sources to the wiki: files or folders are copied into raw/ and summarised into linked pages;
        no paths: bring the wiki up to date with everything in raw/. Relative paths are taken inside the
        knowledge base and may not leave it; absolute paths name files elsewhere."""
        return tools.ingest(list(paths))

    @server.tool(annotations=ToolAnnotations(destructive_hint=False, open_world_hint=False))
    def lint(
        fix: Annotated[bool, Field(description="Repair links and the index where one answer is right.")] = False,
    ) -> dict[str, Any]:
        """Check the wiki: broken links and headings, orphans, the index, missing pages, duplicates, unsupported
        claims (the contradiction check needs the LLM: run `loracle lint`)."""
        return tools.lint(fix)

    @server.tool(annotations=READ_ONLY)
    def adapters() -> dict[str, Any]:
        """The compiled adapters (id, document, size, whether stale) and the adapter folders that can't be used."""
        return tools.adapters()

    @server.resource(PAGE_URI, name="wiki page", mime_type="text/markdown")
    def page(page_id: str) -> str:
        """A wiki page's markdown."""
        try:
            return tools.page_text(page_id)
        except PageNotFoundError as exc:
            raise ResourceNotFoundError(str(exc)) from exc

    return server
