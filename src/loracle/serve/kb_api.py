"""The knowledge-base API the web page reads: pages, link graph, adapters (more as the libraries land)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from loracle.serve.catalog import UnknownAdapterError
from loracle.serve.errors import ApiError
from loracle.serve.render import render_markdown
from loracle.serve.state import ServerState, get_state
from loracle.serve.wiki_view import WikiView

router = APIRouter(prefix="/api")


def _wiki(state: ServerState) -> WikiView:
    if state.kb is None:
        raise ApiError(404, "the server was started without a knowledge base (--kb)", code="no_knowledge_base")
    return WikiView(state.kb.wiki)


@router.get("/info")
async def info(state: ServerState = Depends(get_state)) -> dict:
    return {
        "model": state.base_id,
        "knowledge_base": str(state.kb.root) if state.kb else None,
        "learners": ["context"],
    }


@router.get("/pages")
async def pages(state: ServerState = Depends(get_state)) -> dict:
    wiki = _wiki(state)
    listing = await run_in_threadpool(wiki.pages)
    return {"pages": [{"id": p.id, "title": p.title, "links": len(p.links)} for p in listing]}


@router.get("/pages/{page_id}")
async def page(page_id: str, state: ServerState = Depends(get_state)) -> dict:
    wiki = _wiki(state)

    def build() -> dict:
        doc = wiki.page(page_id)
        if doc is None:
            raise ApiError(404, f"{page_id[:80]}: no such page", type="not_found_error", code="page_not_found")
        return {
            "id": doc.id,
            "title": doc.title,
            "raw": doc.text,
            "frontmatter": doc.frontmatter,
            "html": render_markdown(doc.text, wiki.resolve),
            "links": [t for t in (wiki.resolve(link) for link in doc.links) if t],
            "backlinks": wiki.backlinks(doc.id),
        }

    return await run_in_threadpool(build)


@router.get("/graph")
async def graph(state: ServerState = Depends(get_state)) -> dict:
    wiki = _wiki(state)
    return await run_in_threadpool(wiki.graph)


@router.get("/adapters")
async def adapters(state: ServerState = Depends(get_state)) -> dict:
    def build() -> list[dict[str, Any]]:
        loaded = set(state.pool.loaded())
        rows = []
        for adapter_id in state.catalog.ids():
            try:
                row = state.catalog.describe(adapter_id)
            except (UnknownAdapterError, OSError):
                continue  # removed while we listed
            row["loaded"] = adapter_id in loaded
            rows.append(row)
        return rows

    return {"adapters": await run_in_threadpool(build)}
