"""The knowledge-base API the web page reads: pages, links, search, cited answers, lint, adapters, eval."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from loracle.eval.report import LATEST_JSON, LATEST_PNG, latest_dir
from loracle.kb import KBPaths
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
    return {"model": state.base_id, "knowledge_base": str(state.kb.root) if state.kb else None}


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
    _kb(state)
    assert state.inventory is not None
    return {"adapters": await run_in_threadpool(state.inventory.rows, set(state.pool.loaded()))}


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=4000)
    learner: Literal["context"] = "context"
    adapters: list[AdapterRef] = Field(default_factory=list, max_length=16)


@router.post("/ask")
async def ask(body: AskRequest, state: ServerState = Depends(get_state)) -> dict:
    """A learner's answer with its citations (adapters, if any, stay active while it answers)."""
    _kb(state)
    assert state.answers is not None
    spec = state.spec_for(state.base_id, [(a.id, a.weight) for a in body.adapters])
    answers = state.answers
    # learning (when the pages changed) and answering both run on the worker: one request at a time uses the learner
    return await state.scheduler.run(spec, lambda: answers.answer(body.learner, body.question))


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=4000)
    n: int = Field(4, ge=1, le=12)


@router.post("/query")
async def wiki_query(body: QueryRequest, state: ServerState = Depends(get_state)) -> dict:
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
    return await state.scheduler.run((), run)  # the local model: on the worker like every other use of it


def _eval_file(state: ServerState, name: str) -> Path:
    path = latest_dir(_kb(state).state) / name
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
