"""What every route shares: the model, its adapter pool and scheduler, the adapter catalog, the knowledge base."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from fastapi import Request

from loracle.adapters.pool import AdapterPool, AdapterSpec, normalise_spec
from loracle.asking import KnowledgeBaseAnswerer
from loracle.kb import KBPaths
from loracle.model.loader import LoadedModel
from loracle.serve.ask import LearnerAnswers
from loracle.serve.catalog import AdapterCatalog, UnknownAdapterError, validate_adapter_id
from loracle.serve.generation import Sampling
from loracle.serve.inventory import AdapterInventory
from loracle.serve.scheduler import Scheduler
from loracle.serve.search_view import SearchView
from loracle.serve.wiki_view import WikiView


@dataclass
class ServerState:
    lm: LoadedModel
    pool: AdapterPool
    scheduler: Scheduler
    catalog: AdapterCatalog
    kb: KBPaths | None
    max_new_tokens: int = 200
    #: decoding for requests that name no temperature / top_p (the model's generation config, else greedy)
    sampling: Sampling = field(default_factory=Sampling)
    search: SearchView | None = None
    answers: LearnerAnswers | None = None
    wiki: WikiView | None = None
    inventory: AdapterInventory | None = None
    #: model "kb": questions routed to the knowledge base's adapters (in this server's pool)
    answerer: KnowledgeBaseAnswerer | None = None

    @property
    def base_id(self) -> str:
        return self.lm.name

    def is_base(self, name: str) -> bool:
        return name in {self.lm.name, self.lm.source, "base"}

    def spec_for(self, model: str, extra: Sequence[tuple[str, float]] = ()) -> AdapterSpec:
        """The adapters a request asks for: "<base>", "<adapter>" or "<base>:<adapter>", plus `adapters`.

        Raises UnknownAdapterError (404) for an unknown base or adapter, InvalidAdapterIdError for a bad id.
        """
        ids: list[tuple[str, float]] = []
        if not self.is_base(model):
            base, sep, adapter = model.rpartition(":")
            if sep and not self.is_base(base):
                raise UnknownAdapterError(f"{model}: no such model (the base model is {self.base_id})")
            ids.append((adapter if sep else model, 1.0))
        ids.extend(extra)
        for adapter_id, _ in ids:
            self.catalog.folder_for(validate_adapter_id(adapter_id))
        return normalise_spec(ids)


def get_state(request: Request) -> ServerState:
    return request.app.state.loracle
