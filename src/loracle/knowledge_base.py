"""The Python API: a `KnowledgeBase` over a folder, compiling its documents into adapters and watching it.

    kb = KnowledgeBase("my-kb")                # ttt learner by default; learner="hypernet" writes in one pass
    summary = kb.compile_all()                 # every new or changed wiki page -> adapters/<id>/
    answer = kb.ask("Who founded it?")         # routed to the adapters that answer it; answer.documents
    with kb.watch():                           # keep compiling while files change
        ...

The parts are pluggable: `compiler` (any DocumentCompiler, e.g. a learner), `store` (any AdapterStore),
`source` (any DocumentSource). Left out, they come from the knowledge base's folders and loracle.toml.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loracle.adapters.compiler import DocumentCompiler
from loracle.adapters.manifest import AdapterManifest
from loracle.adapters.store import AdapterStore, LocalAdapterStore
from loracle.compile_limit import DocumentLimit, count_tokens_with, utf8_estimate
from loracle.errors import LoracleError
from loracle.kb import KBPaths
from loracle.learners import DEFAULT_COMPILE_LEARNER, learner_config
from loracle.pipeline import Compilation, CompileSummary, Progress, Watch, WatchStatus, raw_source, wiki_source
from loracle.sources.folder import DocumentSource

if TYPE_CHECKING:
    from loracle.asking import KnowledgeBaseAnswerer, RoutedAnswer
    from loracle.learners.base import LearnerConfig
    from loracle.llm import LLM
    from loracle.model import LoadedModel

SOURCES = ("wiki", "raw")
COMPILE_LOCK = "compile.lock"


def load_compiler(
    name: str, lm: LoadedModel, options: Mapping[str, Any] | LearnerConfig | None = None
) -> DocumentCompiler:
    """The learner `name` on `lm`, as a document compiler (a one-line error if it can't compile documents)."""
    from loracle.learners import create_learner

    learner = create_learner(name, lm, options)
    if not isinstance(learner, DocumentCompiler):
        raise LoracleError(f"learner {name!r} cannot compile documents into adapters (no compile_document)")
    return learner


class KnowledgeBase:
    """A knowledge base folder (see DESIGN.md) with pluggable compiler, adapter store and document source."""

    def __init__(
        self,
        root: Path | str,
        *,
        learner: str = DEFAULT_COMPILE_LEARNER,
        compiler: DocumentCompiler | None = None,
        store: AdapterStore | None = None,
        source: DocumentSource | str = "wiki",
        lm: LoadedModel | None = None,
        learner_options: Mapping[str, Any] | LearnerConfig | None = None,
    ) -> None:
        self.paths = KBPaths(Path(root).expanduser().resolve())
        self.learner = learner
        self.learner_config = learner_config(learner, learner_options)  # a bad option is refused before any model
        self.store: AdapterStore = store if store is not None else LocalAdapterStore(self.paths.adapters)
        self._compiler = compiler
        self._lm = lm
        self._answerer: KnowledgeBaseAnswerer | None = None
        self.source = self._source(source)

    def _source(self, source: DocumentSource | str) -> DocumentSource:
        if not isinstance(source, str):
            return source
        if source not in SOURCES:
            raise LoracleError(f"unknown source {source!r} (known: {', '.join(SOURCES)})")
        return wiki_source(self.paths.root) if source == "wiki" else raw_source(self.paths.root)

    @property
    def lm(self) -> LoadedModel:
        """The base model from loracle.toml, loaded on first use."""
        if self._lm is None:
            from loracle.runtime import load_kb_model

            self._lm = load_kb_model(self.paths)
        return self._lm

    @property
    def compiler(self) -> DocumentCompiler:
        if self._compiler is None:
            self._compiler = load_compiler(self.learner, self.lm, self.learner_config)
        return self._compiler

    def compilation(
        self, *, aggregate: bool = False, batch_size: int = 1, progress: Progress | None = None
    ) -> Compilation:
        lm = self._lm
        extra: dict[str, Any] = {"progress": progress} if progress is not None else {}
        max_tokens = self.paths.config().compile.max_document_tokens
        count = count_tokens_with(lm.tokenizer) if lm is not None else utf8_estimate
        return Compilation(
            self.source,
            self.compiler,
            self.store,
            self.paths.state / COMPILE_LOCK,
            aggregate=aggregate,
            batch_size=batch_size,
            base_model=lm.name if lm is not None else "",
            base_fingerprint=lm.fingerprint if lm is not None else "",
            limit=DocumentLimit(max_tokens, count),
            **extra,
        )

    def compile_all(
        self, *, aggregate: bool = False, batch_size: int = 1, progress: Progress | None = None
    ) -> CompileSummary:
        """Compile every new or changed document; remove the adapters of documents that are gone."""
        self.close()
        return self.compilation(aggregate=aggregate, batch_size=batch_size, progress=progress).run()

    @contextlib.contextmanager
    def watch(
        self,
        *,
        aggregate: bool = False,
        debounce_s: float = 0.3,
        ingest: Callable[[Path], object] | None = None,
        on_change: Callable[[WatchStatus], None] | None = None,
        catch_up: bool = True,
    ) -> Iterator[Watch]:
        """Compile changed files while the block runs. With `ingest`, files saved in raw/ are passed to it
        (it writes wiki pages, which are compiled in turn)."""
        self.close()
        watcher = Watch(
            self.compilation(aggregate=aggregate),
            ingest_root=self.paths.raw if ingest is not None else None,
            ingest=ingest,
            debounce_s=debounce_s,
            on_change=on_change,
            catch_up=catch_up,
        )
        with watcher:
            yield watcher

    def wiki_ingest(self, writer: LLM | None = None) -> Callable[[Path], object]:
        """Ingest one saved raw/ file into the wiki with the configured writer LLM (what `watch` does with
        raw/); a deleted file makes the wiki drop what came only from it. Failures raise one line.
        `writer` replaces the configured writer LLM."""
        from loracle.llm.client import make_llm
        from loracle.wiki import ingest

        writer = writer or make_llm(self.paths.config(), "writer", self.lm)

        def ingest_one(path: Path) -> object:
            report = ingest(self.paths, [path] if path.exists() else [], writer)
            failed = report.failed
            if failed:
                raise LoracleError(failed[0].error or f"{path}: ingest failed")
            return report

        return ingest_one

    def ask(self, question: str, *, max_new_tokens: int | None = None) -> RoutedAnswer:
        """Answer from the compiled adapters: routed to the ones that answer the question (none: the base model),
        applied, one decode; `answer.documents` names the documents whose adapters answered, `answer.warnings`
        any stale adapter. Settings from loracle.toml's [ask]."""
        from loracle.model import GenerationConfig

        if self._answerer is None:
            from loracle.asking import KnowledgeBaseAnswerer

            self._answerer = KnowledgeBaseAnswerer(self.lm, self.paths)
        config = GenerationConfig(max_new_tokens or self._answerer.config.max_new_tokens)
        return self._answerer.ask(question, config)

    def close(self) -> None:
        """Take the adapters `ask` applied out of the model again (compiling trains on the bare base model)."""
        if self._answerer is not None:
            self._answerer.close()
            self._answerer = None

    def adapters(self) -> list[AdapterManifest]:
        return self.store.list()

    def adapter_path(self, adapter_id: str) -> Path:
        return self.store.path(adapter_id)
