"""The knowledge-base API the web page reads: pages, link graph, adapters (more as the libraries land)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from loracle.eval.report import LATEST_JSON, LATEST_PNG, latest_dir
from loracle.serve.ask import answer_json
from loracle.serve.catalog import UnknownAdapterError
from loracle.serve.errors import ApiError
from loracle.serve.openai_api import AdapterRef
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
        wiki = WikiView(state.kb.wiki) if state.kb else None
        rows = []
        for adapter_id in state.catalog.ids():
            try:
                row = state.catalog.describe(adapter_id)
            except (UnknownAdapterError, OSError):
                continue  # removed while we listed
            row["loaded"] = adapter_id in loaded
            row["stale"] = wiki.adapter_stale(row["manifest"]) if wiki else None
            rows.append(row)
        return rows

    return {"adapters": await run_in_threadpool(build)}


@router.get("/search")
async def search(
    q: str = Query(..., min_length=1, max_length=500),
    n: int = Query(10, ge=1, le=50),
    state: ServerState = Depends(get_state),
) -> dict:
    if state.search is None:
        raise ApiError(404, "the server was started without a knowledge base (--kb)", code="no_knowledge_base")
    return {"query": q, "hits": await run_in_threadpool(state.search.search, q, n)}


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=4000)
    learner: Literal["context"] = "context"
    adapters: list[AdapterRef] = Field(default_factory=list, max_length=16)


@router.post("/ask")
async def ask(body: AskRequest, state: ServerState = Depends(get_state)) -> dict:
    """A learner's answer with its citations (adapters, if any, stay active while it answers)."""
    if state.answers is None:
        raise ApiError(404, "the server was started without a knowledge base (--kb)", code="no_knowledge_base")
    spec = state.spec_for(state.base_id, [(a.id, a.weight) for a in body.adapters])
    answers = state.answers
    # learning (if the pages changed) and answering both run on the worker: one request at a time touches the learner
    answer = await state.scheduler.run(spec, lambda: answers.prepared(body.learner).answer(body.question))
    return {"learner": body.learner, **answer_json(answer)}


def _eval_file(state: ServerState, name: str) -> Path:
    if state.kb is None:
        raise ApiError(404, "the server was started without a knowledge base (--kb)", code="no_knowledge_base")
    path = latest_dir(state.kb.state) / name
    if not path.is_file():
        raise ApiError(404, "no eval results yet (run `loracle eval`)", type="not_found_error", code="no_eval")
    return path


@router.get("/eval")
async def eval_results(state: ServerState = Depends(get_state)) -> dict:
    """The latest `loracle eval` results of this knowledge base, as it wrote them."""
    path = _eval_file(state, LATEST_JSON)
    try:
        return json.loads(await run_in_threadpool(path.read_text, encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(500, f"{path}: not valid JSON ({exc})", type="server_error", code="bad_eval_file") from exc


@router.get("/eval/chart.png")
async def eval_chart(state: ServerState = Depends(get_state)) -> FileResponse:
    return FileResponse(_eval_file(state, LATEST_PNG), media_type="image/png", headers={"Cache-Control": "no-cache"})
