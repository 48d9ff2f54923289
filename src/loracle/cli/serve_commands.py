"""`loracle serve`: the OpenAI-compatible API, the knowledge-base API and the web page, in one process."""

from __future__ import annotations

from pathlib import Path

import typer

from loracle.cli.app import EngineOption, ThreadsOption, app, console, load_base, use_engine


@app.command()
def serve(
    kb: Path | None = typer.Option(None, "--kb", help="Knowledge base folder (default: $LORACLE_KB or upwards)."),
    host: str | None = typer.Option(None, "--host", help="Address to bind (default: config, 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="Port (default: config, 8321)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Base model (default: the knowledge base's)."),
    threads: int = ThreadsOption,
    engine: str = EngineOption,
) -> None:
    """Serve the model with per-request adapters (OpenAI-compatible /v1) and the knowledge base's web page.

    Example: loracle serve --kb my-kb --port 8321
    """
    use_engine(engine)
    from loracle.kb import find_kb
    from loracle.serve.app import create_app, resolve_token
    from loracle.serve.launch import bound_port, check_exposure, listening_socket, serve_forever

    paths = find_kb(kb)
    config = paths.config()
    host = host or config.serve.host
    port = port if port is not None else config.serve.port
    check_exposure(host, resolve_token(config.serve))
    sock = listening_socket(host, port)  # a bad or busy port fails here, before the model loads
    from loracle.model.engine import prefer_engine

    prefer_engine(config.model.engine)
    lm = load_base(model or config.model.base, threads or config.model.threads)
    application = create_app(lm, paths, config=config.serve, max_new_tokens=config.model.max_new_tokens)
    name = f"[{host}]" if ":" in host else host
    console.print(
        f"loracle serving {lm.name} and {paths.root} at http://{name}:{bound_port(sock)}/  (Ctrl-C stops)",
        soft_wrap=True,
    )
    serve_forever(application, sock)
