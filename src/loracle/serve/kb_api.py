"""The knowledge-base API the web page reads: pages, links, search, cited answers, lint, adapters, eval."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from pydantic import ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from loracle.eval.report import LATEST_JSON, LATEST_PNG, latest_dir
from loracle.kb import KBPaths
from loracle.serve.body import RequestBody
from loracle.serve.disconnect import unless_disconnected
from loracle.serve.errors import ApiError
from loracle.serve.openai_api import AdapterRef
from loracle.serve.render import render_markdown
from loracle.serve.state import ServerState, get_state

router = APIRouter(prefix="/api")


def _kb(state: ServerState) -> KBPaths:
    if state.kb is None:
        raise ApiError(404, "the server was started without a knowledge base (--kb)", code="no_knowledge_base")
    return state.kb


@router.get("/info")
async def info(state: ServerState = Depends(get_state)) -> dict:
    """The model's name and the knowledge base's folder name (never its path on the server)."""
    return {"model": state.base_id, "knowledge_base": state.kb.root.name if state.kb else None}


@router.get("/pages")
async def pages(state: ServerState = Depends(get_state)) -> dict:
    _kb(state)
    listing = await run_in_threadpool(state.wiki.pages)
    return {"pages": [{"id": p.rel, "title": p.title, "type": p.type, "links": len(p.links)} for p in listing]}


@router.get("/pages/{page_id:path}")
async def page(page_id: str, state: ServerState = Depends(get_state)) -> dict:
    _kb(state)
    wiki = state.wiki

    def build() -> dict:
        info = wiki.page(page_id)  # looked up in the graph, never joined onto a path
        if info is None:
            raise ApiError(404, f"{page_id[:120]}: no such page", type="not_found_error", code="page_not_found")
        return {
            "id": info.rel,
            "title": info.title,
            "type": info.type,
            "raw": info.text,
            "frontmatter": json.loads(json.dumps(info.frontmatter, default=str)),
            "html": render_markdown(wiki.body(info), wiki.resolve),
            "links": wiki.outgoing(info.rel),
            "backlinks": wiki.backlinks(info.rel),
        }

    return await run_in_threadpool(build)


@router.get("/graph")
async def graph(state: ServerState = Depends(get_state)) -> dict:
    _kb(state)
    return await run_in_threadpool(state.wiki.link_graph)


@router.get("/search")
async def search(
    q: str = Query(..., min_length=1, max_length=500),
    n: int = Query(10, ge=1, le=50),
    state: ServerState = Depends(get_state),
) -> dict:
    _kb(state)
    assert state.search is not None
    return {"query": q, "hits": await run_in_threadpool(state.search.search, q, n)}


@router.get("/lint")
async def lint_findings(state: ServerState = Depends(get_state)) -> dict:
    """The wiki's structural lint findings (broken links, orphans, index, duplicates, unsupported claims)."""
    from loracle.wiki import lint

    kb = _kb(state)
    report = await run_in_threadpool(lint, kb)  # no LLM: contradictions are `loracle lint`'s job
    return report.to_json()


@router.get("/adapters")
async def adapters(state: ServerState = Depends(get_state)) -> dict:
    """The usable adapters (the ones /v1/models lists) and the adapter folders that are not, with why."""
    _kb(state)
    assert state.inventory is not None
    rows, unusable = await run_in_threadpool(state.inventory.listing, set(state.pool.loaded()))
    return {"adapters": rows, "unusable": [asdict(u) for u in unusable]}


class AskRequest(RequestBody):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=4000)
    learner: Literal["context"] = "context"
    adapters: list[AdapterRef] = Field(default_factory=list, max_length=16)


@router.post("/ask")
async def ask(body: AskRequest, request: Request, state: ServerState = Depends(get_state)) -> dict:
    """A learner's answer with its citations (adapters, if any, stay active while it answers)."""
    _kb(state)
    assert state.answers is not None
    spec = state.spec_for(state.base_id, [(a.id, a.weight) for a in body.adapters])
    answers = state.answers
    # learning (when the pages changed) and answering both run on the worker: one request at a time uses the learner
    work = state.scheduler.run(spec, lambda: answers.answer(body.learner, body.question))
    return await unless_disconnected(request, work)  # a client gone while it waits for its turn: no answer


class QueryRequest(RequestBody):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=4000)
    n: int = Field(4, ge=1, le=12)


@router.post("/query")
async def wiki_query(body: QueryRequest, request: Request, state: ServerState = Depends(get_state)) -> dict:
    """The wiki's answer: search the pages, let the writer LLM answer from them, cite pages and raw lines."""
    from loracle.llm.client import make_llm
    from loracle.wiki import query

    kb = _kb(state)
    config = kb.config()
    llm = make_llm(config, "writer", lm=state.lm)

    def run() -> dict:
        answer = query(kb, body.question, llm, n=body.n)
        citations = [asdict(c) for c in answer.citations]
        return {"question": answer.question, "text": answer.text, "citations": citations, "llm_calls": answer.llm_calls}

    if config.llm.writer.base_url:  # a remote writer: wait for it off the worker, which stays free for others
        return await run_in_threadpool(run)
    # the local model: on the worker like every other use of it
    return await unless_disconnected(request, state.scheduler.run((), run))


def _eval_file(state: ServerState, name: str) -> Path:
    kb = _kb(state)
    path = latest_dir(kb.state) / name
    if not path.is_file():
        raise ApiError(404, "no eval results yet (run `loracle eval`)", type="not_found_error", code="no_eval")
    if not path.resolve().is_relative_to(kb.root.resolve()):
        raise ApiError(404, f"{name}: links outside the knowledge base", type="not_found_error", code="no_eval")
    return path


@router.get("/eval")
async def eval_results(state: ServerState = Depends(get_state)) -> dict:
    """The latest `loracle eval` results of this knowledge base, as it wrote them."""
    path = _eval_file(state, LATEST_JSON)
    try:
        return json.loads(await run_in_threadpool(path.read_text, encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        message = f"{LATEST_JSON}: not valid JSON ({exc})"
        raise ApiError(500, message, type="server_error", code="bad_eval_file") from exc


@router.get("/eval/chart.png")
async def eval_chart(state: ServerState = Depends(get_state)) -> FileResponse:
    return FileResponse(_eval_file(state, LATEST_PNG), media_type="image/png", headers={"Cache-Control": "no-cache"})
