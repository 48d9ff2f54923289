"""What every route shares: the model, its adapter pool and scheduler, the adapter catalog, the knowledge base."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from fastapi import Request

from loracle.adapters.pool import AdapterPool, AdapterSpec, normalise_spec
from loracle.adapters.prefixes import PrefixAdapters
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
    #: the catalog's prefix adapters (decoded after, not loaded into the pool)
    prefixes: PrefixAdapters | None = None

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

    def split_prefixes(self, spec: AdapterSpec) -> tuple[AdapterSpec, torch.Tensor | None]:
        """The spec's LoRA adapters (for the pool), and its prefix adapters joined in order (None for none); their
        weights do not apply to a prefix. Reads the prefixes' folders: run it off the event loop."""
        if self.prefixes is None:
            return spec, None
        lora, prefixes = self.prefixes.split(spec)
        return lora, self.prefixes.joined(prefixes)


def get_state(request: Request) -> ServerState:
    return request.app.state.loracle
