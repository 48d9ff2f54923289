"""What the MCP server's tools do, as plain methods on one knowledge base (no MCP types here).

Each method takes already-validated arguments and returns JSON-ready data; a problem is a LoracleError with
one line. Page ids are only looked up in the wiki's link graph, never joined onto a path; ingest paths are
confined to the knowledge base unless given as absolute paths where `allow_outside` permits.

The base model loads on the first tool that needs it (query, ask, ingest with a local writer); search,
read_page, list_pages, lint and adapters never load it. Every use of the model is serialised by one lock,
and the knowledge base's adapters are switched off again before anything but `ask` uses it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loracle.confine import real_inside
from loracle.errors import LoracleError
from loracle.kb import KBPaths
from loracle.serve.wiki_view import WikiView

if TYPE_CHECKING:
    from loracle.asking import KnowledgeBaseAnswerer
    from loracle.llm import LLM
    from loracle.model.loader import LoadedModel
    from loracle.serve.ask import LearnerAnswers


class PageNotFoundError(LoracleError):
    """No wiki page has this id (or title, alias or file name)."""


class KnowledgeBaseTools:
    """The tools' work on the knowledge base at `kb`. `lm` (an already loaded model) skips the lazy load."""

    def __init__(self, kb: KBPaths, *, lm: LoadedModel | None = None, allow_outside: bool = True) -> None:
        self.kb = kb
        self.allow_outside = allow_outside
        self.wiki = WikiView(kb.wiki)
        self._lm = lm
        self._answerer: KnowledgeBaseAnswerer | None = None
        self._retrieval: LearnerAnswers | None = None
        self._model_lock = threading.Lock()

    # -- the model, loaded on first need -------------------------------------------------------------------
    @property
    def model_loaded(self) -> bool:
        return self._lm is not None

    def _model(self) -> LoadedModel:
        """The base model from loracle.toml (call with the model lock held)."""
        if self._lm is None:
            from loracle.runtime import load_kb_model

            self._lm = load_kb_model(self.kb)
        return self._lm

    def _base_model(self) -> LoadedModel:
        """The model with no adapter active (`ask` leaves the routed ones on); call with the model lock held."""
        if self._answerer is not None:
            with self._answerer.pool.lock:
                self._answerer.pool.activate(())
        return self._model()

    def _llms(self) -> tuple[LLM, LLM]:
        """The writer and fast LLMs: their endpoints when configured (no model loaded), else the shared local
        model (call with the model lock held)."""
        from loracle.llm.client import writer_and_fast

        config = self.kb.config()
        local = not (config.llm.writer.base_url and config.llm.fast.base_url)
        return writer_and_fast(config, self._base_model() if local else None)

    def close(self) -> None:
        if self._answerer is not None:
            self._answerer.close()
            self._answerer = None

    # -- reading the wiki (no model) -----------------------------------------------------------------------
    def search(self, query: str, n: int = 10, mode: str = "hybrid") -> dict[str, Any]:
        from loracle.search.kb_search import search_kb

        result = search_kb(self.kb, query, n=n, mode=mode)
        hits = [{k: v for k, v in asdict(hit).items() if k != "extra"} for hit in result.hits]
        return {"query": query, "mode": mode, "results": hits, "skipped": result.sync.errors}

    def list_pages(self, page_type: str | None = None) -> dict[str, Any]:
        pages = [
            {"id": p.rel, "title": p.title, "type": p.type, "links": len(p.links)}
            for p in self.wiki.pages()
            if page_type is None or p.type == page_type
        ]
        return {"pages": pages}

    def page_id(self, name: str) -> str:
        """The id of the page `name` is: its id (path under wiki/), what a [[name]] link would open, or the
        page with that title."""
        if self.wiki.page(name) is not None:
            return name
        found = self.wiki.resolve(name)
        if found is None:
            titled = (p.rel for p in self.wiki.pages() if p.title.casefold() == name.strip().casefold())
            found = next(titled, None)
        if found is None:
            raise PageNotFoundError(f"{name[:120]}: no such page in the wiki (list_pages shows the ids)")
        return found

    def read_page(self, name: str) -> dict[str, Any]:
        page_id = self.page_id(name)
        info = self.wiki.page(page_id)
        if info is None:  # removed since the lookup
            raise PageNotFoundError(f"{name[:120]}: no such page in the wiki (list_pages shows the ids)")
        return {
            "id": info.rel,
            "title": info.title,
            "type": info.type,
            "frontmatter": json.loads(json.dumps(info.frontmatter, default=str)),
            "text": info.text,
            "links": self.wiki.outgoing(info.rel),
            "backlinks": self.wiki.backlinks(info.rel),
        }

    def page_text(self, name: str) -> str:
        """The page's markdown as written (the `loracle://page/<id>` resource)."""
        page_id = self.page_id(name)
        info = self.wiki.page(page_id)
        if info is None:
            raise PageNotFoundError(f"{name[:120]}: no such page in the wiki")
        return info.text

    def lint(self, fix: bool = False) -> dict[str, Any]:
        """The structural checks (no LLM, so no contradiction check: `loracle lint` does that)."""
        from loracle.wiki import lint

        return lint(self.kb, fix=fix).to_json()

    def adapters(self) -> dict[str, Any]:
        from loracle.serve.catalog import AdapterCatalog
        from loracle.serve.inventory import AdapterInventory

        inventory = AdapterInventory(self.kb, AdapterCatalog(self.kb.adapters))
        loaded = set(self._answerer.pool.loaded()) if self._answerer is not None else set()
        rows, unusable = inventory.listing(loaded)
        return {"adapters": rows, "unusable": [asdict(u) for u in unusable]}

    # -- answering and writing (the model, when local) ----------------------------------------------------
    def query(self, question: str, n: int = 4) -> dict[str, Any]:
        """The wiki's cited answer: the best pages, the writer's answer from them, pages and raw lines cited."""
        from loracle.llm.client import make_llm
        from loracle.wiki import query

        config = self.kb.config()
        with self._model_lock:
            writer = make_llm(config, "writer", lm=None if config.llm.writer.base_url else self._base_model())
            answer = query(self.kb, question, writer, n=n)
        citations = [asdict(c) for c in answer.citations]
        return {"question": answer.question, "text": answer.text, "citations": citations}

    def ask(self, question: str, max_tokens: int | None = None) -> dict[str, Any]:
        """The answer from the knowledge base's compiled adapters; when it has none this model can use, from
        retrieval (the `context` learner over the wiki), with `answered_from` and `note` saying so."""
        from loracle.asking import check_has_adapters
        from loracle.model import GenerationConfig

        with self._model_lock:
            try:
                check_has_adapters(self.kb)  # before the model loads
                answerer = self._adapter_answerer()
            except LoracleError as why:
                return {**self._retrieval_answer(question), "note": str(why)}
            config = GenerationConfig(max_new_tokens=max_tokens or answerer.config.max_new_tokens)
            answer = answerer.ask(question, config)
        return {"answered_from": "adapters", "text": answer.text, **answer.plan.record()}

    def _adapter_answerer(self) -> KnowledgeBaseAnswerer:
        from loracle.asking import KnowledgeBaseAnswerer

        if self._answerer is None:
            answerer = KnowledgeBaseAnswerer(self._model(), self.kb)
            answerer.check_ready()  # refused: nothing kept, so adapters compiled later are found next time
            self._answerer = answerer
        return self._answerer

    def _retrieval_answer(self, question: str) -> dict[str, Any]:
        from loracle.serve.ask import LearnerAnswers

        lm = self._base_model()
        if self._retrieval is None:
            self._retrieval = LearnerAnswers(lm, self.kb)
        answer = self._retrieval.answer("context", question)
        return {"answered_from": "retrieval", "text": answer["text"], "citations": answer["citations"]}

    def ingest(self, paths: list[str]) -> dict[str, Any]:
        """Bring the wiki up to date with `paths` (every source in raw/ when none are given)."""
        from loracle.wiki import ingest

        targets = [self.ingest_path(p) for p in paths] or [self.kb.raw]
        with self._model_lock:
            report = ingest(self.kb, targets, *self._llms())
        if report.failed and len(report.failed) == len(report.results):
            raise LoracleError(f"nothing ingested: {report.failed[0].error}")
        results = [{k: v for k, v in asdict(r).items() if k not in ("seconds", "llm_calls")} for r in report.results]
        counts = {s: report.count(s) for s in ("added", "updated", "unchanged", "removed", "failed")}
        return {"results": results, "counts": counts}

    def ingest_path(self, given: str) -> Path:
        """A path to ingest: relative ones are inside the knowledge base and must stay there (links followed);
        an absolute one (or ~/...) is taken as given, where `allow_outside` permits paths outside it."""
        path = Path(given).expanduser()
        if not path.is_absolute():
            path = self.kb.root / path
            if real_inside(path, self.kb.root) is None:
                raise LoracleError(f"{given[:200]}: leads outside the knowledge base (give an absolute path)")
        elif not self.allow_outside and real_inside(path, self.kb.root) is None:
            raise LoracleError(
                f"{given[:200]}: outside the knowledge base; this server takes only paths inside it "
                "(it is served beyond this machine)"
            )
        return path
