"""Route a question to the compiled adapters of a store that answer it: the knowledge base's way to ask.

Each adapter is known by its manifest's `routing_keys` (what the learner trained it to answer: its cues and
its document's distinct words); an adapter without them (older ones, merges) by its title plus the texts
`fallback_keys` gives (its document's words, while the knowledge base holds it). A question goes to the
adapters whose keys hold at least `min_coverage` of its content words or hold a question at least
`min_similarity` close to it in meaning, best first (loracle.routing.KeyRouter), at most `route_top_k`; to
none when nothing matches or (`leave_general`) when the question is nearer in meaning to the bundled general
prompts every adapter was trained to leave alone, and then the base model answers.

The manifests are read again only when the store changes (one directory listing and a stat per adapter per
question). Adapters whose files lead out of the store, whose manifest or weights are unreadable, or that were
made for another base model are never routed to; they are listed (`unusable`, `foreign`) for the caller to
report by name.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loracle.adapters.manifest import AdapterManifest
from loracle.adapters.pool import AdapterSpec
from loracle.adapters.store import LocalAdapterStore, weights_problem
from loracle.bundled import general_prompts
from loracle.config import AskConfig
from loracle.confine import real_inside
from loracle.errors import AdapterError
from loracle.model.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, MANIFEST
from loracle.routing import KeyRouter
from loracle.search.embedder import Embedder

#: adapter manifests without routing keys -> adapter id -> texts to route them by (beside their title)
FallbackKeys = Callable[[Sequence[AdapterManifest]], dict[str, list[str]]]


@dataclass(frozen=True)
class Routed:
    """One adapter chosen for a question, and why."""

    adapter_id: str
    weight: float
    document_id: str
    title: str
    #: the router's score (IDF-weighted overlap of the question with the adapter's keys)
    score: float
    #: the share of the question's content words the adapter's keys hold
    coverage: float
    #: the cosine of the question with the adapter's nearest trained question (0 when words alone route)
    similarity: float = 0.0


@dataclass(frozen=True)
class Route:
    """The adapters a question goes to, best first; none means the base model answers alone."""

    question: str
    adapters: tuple[Routed, ...] = ()

    @property
    def spec(self) -> AdapterSpec:
        """(adapter id, weight) pairs for the AdapterPool."""
        return tuple((a.adapter_id, a.weight) for a in self.adapters)


@dataclass
class _Table:
    """The store as last read: what routing needs, and what can't be routed to."""

    signature: tuple
    manifests: list[AdapterManifest] = field(default_factory=list)
    router: KeyRouter = field(default_factory=lambda: KeyRouter([]))
    unusable: list[tuple[str, str]] = field(default_factory=list)  # (adapter id, problem)
    foreign: list[AdapterManifest] = field(default_factory=list)


class AdapterRouter:
    """Routes questions over the adapters in `store` (see the module docstring). Thread-safe."""

    def __init__(
        self,
        store: LocalAdapterStore,
        config: AskConfig | None = None,
        *,
        fingerprint: str = "",
        fallback_keys: FallbackKeys | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        """`embedder` embeds questions and routing keys when `config.min_similarity` is set (default: the
        shipped MiniLM, loaded on first use)."""
        self.store = store
        self.config = config or AskConfig()
        self.fingerprint = fingerprint
        self.embedder = embedder
        self.fallback_keys = fallback_keys or (lambda manifests: {})
        self._table: _Table | None = None
        self._lock = threading.Lock()

    # -- what is in the store -------------------------------------------------------------------------------
    def manifests(self) -> list[AdapterManifest]:
        """The adapters questions can be routed to."""
        return list(self._current().manifests)

    def unusable(self) -> list[tuple[str, str]]:
        """(adapter id, what is wrong with it) for every adapter folder that is never routed to."""
        table = self._current()
        return [*table.unusable, *((m.id, foreign_problem(m, self.fingerprint)) for m in table.foreign)]

    def foreign(self) -> list[AdapterManifest]:
        """The adapters made for another base model than the one answering."""
        return list(self._current().foreign)

    def folder(self, adapter_id: str) -> Path:
        """The folder of a routable adapter (what the AdapterPool loads)."""
        if adapter_id not in {m.id for m in self._current().manifests}:
            raise AdapterError(f"{adapter_id}: no such adapter in {self.store.root}")
        return self.store.root / adapter_id

    # -- routing --------------------------------------------------------------------------------------------
    def route(self, question: str) -> Route:
        """The adapters for `question`, best first (see the module docstring)."""
        table = self._current()
        c = self.config
        routed = []
        for match in table.router.route(question, c.route_top_k, c.min_coverage, c.min_similarity):
            manifest = table.manifests[match.index]
            routed.append(
                Routed(
                    manifest.id,
                    c.stack_weight,
                    manifest.document_id,
                    manifest.title or manifest.document_id or manifest.id,
                    round(match.score, 4),
                    round(match.coverage, 4),
                    round(match.similarity, 4),
                )
            )
        return Route(question, tuple(routed))

    def _current(self) -> _Table:
        signature = self._signature()
        with self._lock:
            if self._table is None or self._table.signature != signature:
                self._table = self._read(signature)
            return self._table

    def _signature(self) -> tuple:
        """What changes when an adapter is compiled, recompiled, removed or edited: names, sizes and mtimes."""
        found = []
        for adapter_id in self.store.ids():
            folder = self.store.root / adapter_id
            try:
                stats = [(folder / name).stat() for name in (MANIFEST, ADAPTER_WEIGHTS)]
            except OSError:
                found.append((adapter_id,))  # incomplete: read as unusable
                continue
            found.append((adapter_id, *((s.st_mtime_ns, s.st_size) for s in stats)))
        return tuple(found)

    def _read(self, signature: tuple) -> _Table:
        table = _Table(signature)
        for adapter_id in self.store.ids():
            problem = self._problem(adapter_id)
            if problem:
                table.unusable.append((adapter_id, problem))
                continue
            try:
                manifest = self.store.get(adapter_id).updated(id=adapter_id)
            except AdapterError as exc:
                table.unusable.append((adapter_id, str(exc)))
                continue
            if self.fingerprint and manifest.base_fingerprint and manifest.base_fingerprint != self.fingerprint:
                table.foreign.append(manifest)
                continue
            table.manifests.append(manifest)
        fallback = self.fallback_keys([m for m in table.manifests if not m.routing_keys])
        keys = [m.routing_keys or [m.title, *fallback.get(m.id, [])] for m in table.manifests]
        background = general_prompts() if self.config.leave_general else []
        table.router = KeyRouter(keys, self._embedder(), background)
        return table

    def _embedder(self) -> Embedder | None:
        if self.config.min_similarity is None:
            return None
        if self.embedder is None:
            from loracle.search.embedder import default_embedder

            self.embedder = default_embedder()
        return self.embedder

    def _problem(self, adapter_id: str) -> str:
        """Why the store's folder `adapter_id` can't be routed to ("" when it can)."""
        folder = self.store.root / adapter_id
        for path in (folder, folder / ADAPTER_CONFIG, folder / ADAPTER_WEIGHTS, folder / MANIFEST):
            if not path.exists():
                return f"{folder}: incomplete adapter (no {path.name})"
            if real_inside(path, self.store.root) is None:
                return f"{path}: links outside the knowledge base's adapters folder"
        return weights_problem(folder)


def foreign_problem(manifest: AdapterManifest, fingerprint: str) -> str:
    """Why an adapter made for another base model is refused."""
    return (
        f"made for another base model ({manifest.base_model or 'unnamed'}, fingerprint "
        f"{manifest.base_fingerprint}; the loaded model is {fingerprint})"
    )
