"""Ask a knowledge base from its compiled adapters: the one answer path behind every door.

`KnowledgeBaseAnswerer(lm, kb)` routes a question to the adapters that answer it (adapters.router), applies
them to the base model (adapters.pool: none routed, the base model alone), answers in ONE decode with the
question as the user message (no document in the prompt, no recitation), and names the documents whose
adapters answered. `loracle ask --kb`, `chat --kb`, the server's model "kb", the web page, the Python API
(`KnowledgeBase.ask`) and the demo all answer through it.

What it refuses, in one line: a knowledge base with no adapters (run `loracle compile`), and one whose adapters
were all made for another base model (named). What it warns about and still answers: an adapter whose
document changed since it was compiled (stale), and adapters that can't be used (named, never applied).

Thread-safe: every decoding step runs under the pool's lock with this answer's adapters active, as the
server's scheduler runs its steps, so answers on several threads (or beside the server's) never mix adapters.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from loracle.adapter_sources import AdapterSources
from loracle.adapters.manifest import AdapterManifest
from loracle.adapters.pool import AdapterPool, AdapterSpec
from loracle.adapters.prefixes import PrefixAdapters
from loracle.adapters.router import AdapterRouter, Route, Routed, foreign_problem
from loracle.adapters.store import LocalAdapterStore
from loracle.config import AskConfig
from loracle.errors import AdapterError, LoracleError
from loracle.kb import KBPaths
from loracle.model.chat import Message, encode_chat, question_messages
from loracle.model.generate import GenerationConfig, GenerationStats, stream_ids
from loracle.model.loader import LoadedModel
from loracle.routing import words


@dataclass(frozen=True)
class AnsweringDocument:
    """A document whose adapter answered: what it is, where it is in the knowledge base, which adapter."""

    id: str
    title: str
    adapter: str
    #: "wiki" or "raw": where it was compiled from
    source: str
    #: the wiki page (a path under wiki/) when the document is one, for links
    page: str | None
    #: the file, relative to the knowledge base; None when it is gone
    path: str | None

    def label(self) -> str:
        return f"{self.title} ({self.adapter})"


@dataclass
class AskPlan:
    """Everything decided before decoding: the route, the prompt, the documents named, the warnings."""

    route: Route
    messages: list[Message]
    documents: list[AnsweringDocument] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: the routed adapters that are prefixes (placed before the prompt), in route order
    prefixes: tuple[str, ...] = ()

    @property
    def spec(self) -> AdapterSpec:
        """The routed LoRA adapters, for the pool (prefixes are not PEFT layers)."""
        return tuple((adapter_id, weight) for adapter_id, weight in self.route.spec if adapter_id not in self.prefixes)

    def sources_line(self) -> str:
        """`from: Title (adapter-id)`, or that the base model answered alone."""
        if not self.documents:
            return "from: the base model (no adapter matched)"
        return "from: " + ", ".join(d.label() for d in self.documents)

    def record(self) -> dict[str, Any]:
        """The adapters, documents and warnings as JSON (the server's `loracle` field)."""
        return {
            "adapters": [
                {"id": a.adapter_id, "weight": a.weight, "score": a.score, "coverage": a.coverage}
                for a in self.route.adapters
            ],
            "documents": [asdict(d) for d in self.documents],
            "warnings": list(self.warnings),
        }


class AnswerStream:
    """An answer's text pieces as they are decoded; `plan` is known before the first piece, `stats` after the last."""

    def __init__(self, plan: AskPlan, pieces: Iterator[str], stats: GenerationStats) -> None:
        self.plan, self._pieces, self.stats = plan, pieces, stats

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def close(self) -> None:
        self._pieces.close()  # type: ignore[attr-defined]


@dataclass
class RoutedAnswer:
    """A knowledge base's answer from its adapters."""

    text: str
    plan: AskPlan
    seconds: float = 0.0

    @property
    def documents(self) -> list[AnsweringDocument]:
        return self.plan.documents

    @property
    def warnings(self) -> list[str]:
        return self.plan.warnings

    @property
    def adapters(self) -> tuple[Routed, ...]:
        return self.plan.route.adapters


class KnowledgeBaseAnswerer:
    """Answers questions about a knowledge base from its compiled adapters (see the module docstring).

    `pool` shares the adapters loaded in a server's model (its own pool otherwise; `close()` then takes PEFT's
    layers out of `lm` again), `prefixes` the prefix adapters it has read. `config` defaults to the knowledge
    base's `[ask]` section.
    """

    def __init__(
        self,
        lm: LoadedModel,
        kb: KBPaths | Path | str,
        *,
        config: AskConfig | None = None,
        pool: AdapterPool | None = None,
        prefixes: PrefixAdapters | None = None,
    ) -> None:
        self.lm = lm
        self.kb = kb if isinstance(kb, KBPaths) else KBPaths(Path(kb).expanduser().resolve())
        self.config = config or self.kb.config().ask
        self.sources = AdapterSources(self.kb)
        self.router = AdapterRouter(
            LocalAdapterStore(self.kb.adapters),
            self.config,
            fingerprint=lm.fingerprint,
            fallback_keys=self._document_words,
        )
        self._own_pool = pool is None
        self.pool = pool if pool is not None else AdapterPool(lm, self.router.folder)
        self.prefixes = prefixes if prefixes is not None else PrefixAdapters(lm, self.router.folder)

    def close(self) -> None:
        """Take PEFT's layers out of the model again (when the pool is this answerer's own)."""
        if self._own_pool:
            self.pool.close()

    def __enter__(self) -> KnowledgeBaseAnswerer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- deciding -------------------------------------------------------------------------------------------
    def check_ready(self) -> None:
        """Refuse, in one line, a knowledge base that has no adapters this model can use."""
        if self.router.manifests():
            return
        foreign = self.router.foreign()
        if foreign:
            others = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
            raise AdapterError(
                f"{self.kb.adapters / foreign[0].id}: {foreign_problem(foreign[0], self.lm.fingerprint)}{others}; "
                "compile the knowledge base again with this model"
            )
        raise no_adapters(self.kb, self.router.unusable())

    def plan(self, asked: str | Sequence[Message]) -> AskPlan:
        """Route the question (a string, or a conversation routed on its last user message) and say what the
        answer will come from."""
        messages = question_messages(asked) if isinstance(asked, str) else [dict(m) for m in asked]
        question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        if not question.strip():
            raise LoracleError("the question is empty (nothing to route)")
        self.check_ready()
        route = self.router.route(question)
        manifests = {m.id: m for m in self.router.manifests()}
        routed = [manifests[a.adapter_id] for a in route.adapters if a.adapter_id in manifests]
        paths = self.sources.locate(routed)
        documents, warnings = [], []
        for manifest in routed:
            page, path = self.sources.relative(manifest, paths.get(manifest.id))
            title = manifest.title or manifest.document_id or manifest.id
            documents.append(AnsweringDocument(manifest.document_id, title, manifest.id, manifest.source, page, path))
            if self.sources.stale(manifest, paths.get(manifest.id)):
                warnings.append(stale_warning(manifest, path))
        unused = unused_warning(self.router.unusable())
        _, prefixes = self.prefixes.split(route.spec)
        return AskPlan(route, messages, documents, warnings + ([unused] if unused else []), prefixes)  # type: ignore[arg-type]

    # -- answering ------------------------------------------------------------------------------------------
    def stream(self, asked: str | Sequence[Message], config: GenerationConfig | None = None) -> AnswerStream:
        """The answer, streamed. The routed adapters are loaded (and checked against the model) before this
        returns, so a bad adapter fails before the first piece."""
        plan = self.plan(asked)
        config = config or GenerationConfig(max_new_tokens=self.config.max_new_tokens)
        for adapter_id, _ in plan.spec:
            self.pool.ensure_loaded(adapter_id)
        prefix = self.prefix(plan)
        stream = stream_ids(self.lm, encode_chat(self.lm.tokenizer, plan.messages), config, prefix)
        return AnswerStream(plan, self._steps(plan.spec, iter(stream)), stream.stats)

    def prefix(self, plan: AskPlan) -> torch.Tensor | None:
        """The plan's prefix adapters joined, to decode after (None when it routed to none)."""
        return self.prefixes.joined(plan.prefixes)

    def ask(self, asked: str | Sequence[Message], config: GenerationConfig | None = None) -> RoutedAnswer:
        """The whole answer."""
        start = time.perf_counter()
        stream = self.stream(asked, config)
        text = "".join(stream).strip()
        return RoutedAnswer(text, stream.plan, time.perf_counter() - start)

    def _steps(self, spec: AdapterSpec, pieces: Iterator[str]) -> Iterator[str]:
        """`pieces`, each decoded under the pool's lock with `spec` active (the adapters pinned meanwhile), as the
        server's scheduler runs its steps."""
        with self.pool.pinned(spec):
            try:
                while True:
                    # inference mode around each step: streams interleaved on one thread would otherwise resume
                    # one another outside it (the decoder enters it inside its generator)
                    with self.pool.lock, torch.inference_mode():
                        self.pool.activate(spec)
                        piece = next(pieces, None)
                    if piece is None:
                        return
                    yield piece
            finally:
                close = getattr(pieces, "close", None)
                if close is not None:
                    with self.pool.lock:
                        close()

    def _document_words(self, manifests: Sequence[AdapterManifest]) -> dict[str, list[str]]:
        """The distinct words of each adapter's document, while the knowledge base holds it (routing keys for
        adapters compiled without any)."""
        paths = self.sources.locate(list(manifests))
        found = {}
        for manifest in manifests:
            path = paths.get(manifest.id)
            document = self.sources.read(manifest.source, path) if path is not None else None
            if document is not None:
                found[manifest.id] = [" ".join(sorted(set(words(document.text))))]
        return found


def check_has_adapters(kb: KBPaths) -> None:
    """Refuse a knowledge base with no adapter folders at all, before any model is loaded."""
    if not LocalAdapterStore(kb.adapters).ids():
        raise no_adapters(kb)


def no_adapters(kb: KBPaths, unusable: Sequence[tuple[str, str]] = ()) -> LoracleError:
    """The one line for a knowledge base that has nothing to answer from: it says to compile."""
    why = f" ({unusable[0][1]})" if unusable else ""
    return LoracleError(f"{kb.root}: no compiled adapters{why}; run `loracle compile --kb {kb.root}` first")


def unused_warning(unusable: Sequence[tuple[str, str]]) -> str:
    """One line naming the adapters that are never applied (unreadable, linked out, for another model), or ""."""
    if not unusable:
        return ""
    (first, problem), count = unusable[0], len(unusable)
    if count == 1:
        return f"adapter {first} not used: {problem}"
    names = ", ".join(adapter_id for adapter_id, _ in unusable[:5]) + (", ..." if count > 5 else "")
    return f"{count} adapters not used ({names}); {first}: {problem}"


def stale_warning(manifest: AdapterManifest, path: str | None) -> str:
    """The one line naming an adapter whose document changed (or went) since it was compiled."""
    if path is None:
        return (
            f"adapter {manifest.id} is stale: its document {manifest.document_id!r} is gone from "
            f"{manifest.source}/ (run `loracle compile`)"
        )
    return f"adapter {manifest.id} is stale: {path} changed since it was compiled (run `loracle compile`)"
