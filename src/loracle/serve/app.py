"""The server: `create_app(lm, kb=...)` builds the FastAPI app around an already-loaded model."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from loracle.adapters.pool import AdapterPool
from loracle.adapters.prefixes import PrefixAdapters
from loracle.asking import KnowledgeBaseAnswerer
from loracle.config import ServeConfig
from loracle.kb import KBPaths
from loracle.model.loader import LoadedModel
from loracle.serve import embeddings, kb_api, openai_api
from loracle.serve.ask import LearnerAnswers
from loracle.serve.catalog import AdapterCatalog
from loracle.serve.errors import install_error_handlers
from loracle.serve.generation import model_sampling
from loracle.serve.inventory import AdapterInventory
from loracle.serve.scheduler import Scheduler
from loracle.serve.search_view import SearchView
from loracle.serve.security import BearerAuth, BodyLimit, LoopbackOnly
from loracle.serve.state import ServerState
from loracle.serve.wiki_view import WikiView

STATIC_DIR = Path(__file__).parent / "static"


def resolve_token(config: ServeConfig) -> str:
    """The bearer token: config.serve.token, else the environment variable config.serve.token_env names."""
    return config.token or (os.environ.get(config.token_env, "") if config.token_env else "")


def create_app(
    lm: LoadedModel,
    kb: KBPaths | Path | None = None,
    *,
    config: ServeConfig | None = None,
    token: str | None = None,
    max_new_tokens: int = 200,
) -> FastAPI:
    """The app serving `lm` (never reloaded) and, when given, the knowledge base at `kb`.

    `token=None` reads it from config/environment; "" turns auth off, and then only requests for a loopback
    Host from this server's own page (or a configured CORS origin) are answered.
    """
    config = config or (kb.config().serve if isinstance(kb, KBPaths) else ServeConfig())
    paths = KBPaths(Path(kb)) if isinstance(kb, Path | str) else kb
    catalog = AdapterCatalog(paths.adapters if paths else None)
    pool = AdapterPool(lm, catalog.folder_for, max_loaded=config.max_loaded_adapters)
    scheduler = Scheduler(pool, max_interleaved=config.max_interleaved)
    state = ServerState(lm, pool, scheduler, catalog, paths, max_new_tokens, model_sampling(lm))
    state.prefixes = PrefixAdapters(lm, catalog.folder_for)
    if paths is not None:
        state.search = SearchView(paths.search_db, paths.wiki)
        state.answers = LearnerAnswers(lm, paths)
        state.wiki = WikiView(paths.wiki)
        state.answerer = KnowledgeBaseAnswerer(lm, paths, config=paths.config().ask, pool=pool, prefixes=state.prefixes)
        state.inventory = AdapterInventory(paths, catalog, state.answerer.sources)  # one cache of document hashes

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        scheduler.close()
        pool.close()
        if state.search:
            state.search.close()

    app = FastAPI(title="loracle", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url="/v1/openapi.json")
    app.state.loracle = state
    install_error_handlers(app)
    app.include_router(openai_api.router)
    app.include_router(embeddings.router)
    app.include_router(kb_api.router)

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True, "model": lm.name}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    token = resolve_token(config) if token is None else token
    app.add_middleware(BearerAuth, token=token)
    app.add_middleware(BodyLimit, max_bytes=config.max_request_bytes)
    if config.cors_origins:  # outside the others, so that even a 401 or 413 carries the CORS headers
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    if not token:  # outermost: a request for a foreign Host or from a foreign page gets nothing else
        app.add_middleware(LoopbackOnly, allowed_origins=config.cors_origins)
    return app
