"""The memory-token compressor at use time: a document in, its prefix cache out, questions answered with it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from loracle.errors import DocumentError
from loracle.learners.hypernet.checkpoint import load_design
from loracle.learners.hypernet.prefix import DESIGN, MemoryCompressor, document_prefix, write_prefix_adapter
from loracle.learners.hypernet.reading import DocPrompt, doc_ids
from loracle.model.chat import question_messages
from loracle.model.generate import GenerationConfig, generate_chat
from loracle.model.loader import LoadedModel


class DocToPrefix:
    """Compress a document into a prefix cache: each chunk of the network's `chunk_tokens` in one forward pass
    into its own memory tokens, the chunks' prefixes joined one after another."""

    def __init__(self, lm: LoadedModel, net: MemoryCompressor) -> None:
        self.lm = lm
        self.net = net.to(lm.device).eval()
        self.chunk_tokens = net.config.chunk_tokens
        self.prompt = DocPrompt.for_tokenizer(lm.tokenizer)

    @classmethod
    def from_checkpoint(cls, lm: LoadedModel, path: Path) -> DocToPrefix:
        """Load `path` (a checkpoint, or a training run folder holding one) of a memory-token compressor."""
        return cls(lm, load_design(path, lm.name, lm.fingerprint, MemoryCompressor))

    def internalise(self, text: str, doc_id: str = "text") -> torch.Tensor:
        """The document's prefix cache, [layers, 2, kv_heads, m x chunks, head_dim]."""
        ids = doc_ids(self.lm.tokenizer, text)
        if not ids:
            raise DocumentError(f"{doc_id}: empty document, nothing to learn")
        with torch.no_grad():
            return document_prefix(self.lm.model, self.net, self.prompt.prefix, ids).detach()

    def chunk_prefix(self, chunk: Sequence[int]) -> torch.Tensor:
        """One chunk's prefix, [layers, 2, kv_heads, m, head_dim] (`chunk`: at most `chunk_tokens` ids)."""
        if not 0 < len(chunk) <= self.chunk_tokens:
            raise ValueError(f"a chunk of {len(chunk)} tokens (1 to {self.chunk_tokens})")
        with torch.no_grad():
            return self.net(self.lm.model, [*self.prompt.prefix, *chunk]).detach()

    def answer(self, question: str, kv: torch.Tensor, max_new_tokens: int = 32) -> str:
        """The closed-book reply to `question` with the prefix before it (no document in the prompt)."""
        return generate_chat(self.lm, question_messages(question), GenerationConfig(max_new_tokens), prefix=kv)

    def export(
        self, kv: torch.Tensor, folder: Path, manifest: dict[str, Any], dtype: torch.dtype = torch.float32
    ) -> int:
        """Write the prefix as a plain PEFT prefix-tuning adapter folder, its weights in `dtype`; returns the bytes
        of its weights."""
        record = {"design": DESIGN, "base_fingerprint": self.lm.fingerprint, **manifest}
        return write_prefix_adapter(folder, kv, base_model=self.lm.name, manifest=record, dtype=dtype)
