"""The hypernetwork at use time: a base model plus a trained network, turning text into chunk adapters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from loracle.errors import DocumentError, LoracleError
from loracle.hypernet.checkpoint import load_hypernet, shipped_path
from loracle.hypernet.lora import Lora, concat_ranks
from loracle.hypernet.network import Hypernet
from loracle.hypernet.reading import DocPrompt, chunk_ids, doc_ids, read_chunks
from loracle.model.loader import LoadedModel

DEFAULT_CHUNK_TOKENS = 1024  # a 1,000-token chunk -> one rank-8 adapter (~2 MB in fp32 for SmolLM2-135M)


@dataclass
class ChunkAdapter:
    """The adapter the hypernetwork wrote for one chunk of a document, with the chunk's text for routing."""

    doc_id: str
    title: str
    index: int
    text: str
    tokens: int
    lora: Lora


class DocToLora:
    """Write documents (or task descriptions) into LoRA adapters with one forward pass per chunk."""

    def __init__(self, lm: LoadedModel, net: Hypernet, chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> None:
        self.lm = lm
        self.net = net.to(lm.device).eval()
        self.chunk_tokens = chunk_tokens
        self.prompt = DocPrompt.for_tokenizer(lm.tokenizer)

    @classmethod
    def from_checkpoint(cls, lm: LoadedModel, path: Path | None = None, **kwargs) -> DocToLora:
        """Load `path`, or the checkpoint shipped for this base model."""
        path = path or shipped_path(lm.name)
        if not path.is_dir():
            raise LoracleError(
                f"{path}: no hypernetwork checkpoint for model {lm.name} (train one: loracle train-hypernet)"
            )
        net, _meta, _ = load_hypernet(path, lm.fingerprint)
        return cls(lm, net, **kwargs)

    def internalise(self, text: str, doc_id: str = "text", title: str = "") -> list[ChunkAdapter]:
        """One adapter per chunk of `text` (batch 1 per chunk, the document read once)."""
        tokenizer = self.lm.tokenizer
        ids = doc_ids(tokenizer, text)
        chunks = chunk_ids(ids, self.chunk_tokens)
        if not chunks:
            raise DocumentError(f"{doc_id}: empty document, nothing to learn")
        adapters = []
        with torch.no_grad():
            for index, chunk in enumerate(chunks):
                reading = read_chunks(self.lm.model, self.prompt, [chunk])
                lora = {k: (a.detach(), b.detach()) for k, (a, b) in self.net(reading)[0].items()}
                adapters.append(ChunkAdapter(doc_id, title, index, tokenizer.decode(chunk), len(chunk), lora))
        return adapters

    def task_adapter(self, description: str) -> Lora:
        """Text mode: a task description in, one adapter out (the description read like a document)."""
        return self.combine(self.internalise(description, doc_id="task"))

    def bias(self) -> Lora:
        return {k: (a.detach(), b.detach()) for k, (a, b) in self.net.bias_lora().items()}

    def combine(self, adapters: Sequence[ChunkAdapter]) -> Lora:
        """The learned bias LoRA plus the chunk adapters, by rank concatenation (their deltas add up)."""
        return concat_ranks([self.bias(), *(a.lora for a in adapters)])
