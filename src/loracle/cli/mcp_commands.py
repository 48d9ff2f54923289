"""`loracle mcp`: the knowledge base as an MCP server for agents, on stdio (default) or streamable HTTP."""

from __future__ import annotations

from pathlib import Path

import typer

from loracle.cli.app import app, err_console


@app.command()
def mcp(
    kb: Path | None = typer.Option(None, "--kb", help="Knowledge base folder (default: $LORACLE_KB or upwards)."),
    http: bool = typer.Option(False, "--http", help="Serve streamable HTTP at /mcp instead of stdio."),
    host: str | None = typer.Option(None, "--host", help="With --http: address to bind (default: config, 127.0.0.1)."),
    port: int = typer.Option(8322, "--port", help="With --http: port (0 = any free one)."),
) -> None:
    """Serve the knowledge base to agents over MCP: search, read_page, list_pages, query, ask, ingest, lint and
    adapters tools, and each wiki page as a loracle://page/<id> resource. The model loads on first need.

    Over HTTP the rules of `loracle serve` hold: loopback only unless a token is set (serve.token or
    $LORACLE_TOKEN), and then every request needs it.

    Example: claude mcp add loracle -- loracle mcp --kb ~/my-kb
    """
    from loracle.kb import find_kb
    from loracle.mcp_server import KnowledgeBaseTools, create_server

    paths = find_kb(kb)
    if not http:
        server = create_server(KnowledgeBaseTools(paths))
        server.run("stdio")
        return
    from loracle.mcp_server.http import MCP_PATH, http_app
    from loracle.serve.app import resolve_token
    from loracle.serve.launch import bound_port, check_exposure, is_loopback, listening_socket, serve_forever

    config = paths.config().serve
    host = host or config.host
    token = resolve_token(config)
    check_exposure(host, token)
    sock = listening_socket(host, port)
    tools = KnowledgeBaseTools(paths, allow_outside=is_loopback(host))
    name = f"[{host}]" if ":" in host else host
    err_console.print(
        f"loracle MCP for {paths.root} at http://{name}:{bound_port(sock)}{MCP_PATH}  (Ctrl-C stops)",
        markup=False,
        soft_wrap=True,
    )
    serve_forever(http_app(create_server(tools), config, token), sock)
