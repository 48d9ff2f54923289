"""The memory-token compressor at use time: a document in, its prefix cache out, questions answered with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from loracle.errors import DocumentError
from loracle.learners.hypernet.checkpoint import load_design
from loracle.learners.hypernet.prefix import DESIGN, MemoryCompressor, greedy_with_prefix, write_prefix_adapter
from loracle.learners.hypernet.reading import DocPrompt, doc_ids, student_prompt
from loracle.model.loader import LoadedModel


class DocToPrefix:
    """Compress a document (its first `max_doc_tokens`) into a prefix cache with one forward pass."""

    def __init__(self, lm: LoadedModel, net: MemoryCompressor, max_doc_tokens: int = 256) -> None:
        self.lm = lm
        self.net = net.to(lm.device).eval()
        self.max_doc_tokens = max_doc_tokens
        self.prompt = DocPrompt.for_tokenizer(lm.tokenizer)

    @classmethod
    def from_checkpoint(cls, lm: LoadedModel, path: Path, **kwargs: Any) -> DocToPrefix:
        """Load `path` (a checkpoint, or a training run folder holding one) of a memory-token compressor."""
        return cls(lm, load_design(path, lm.name, lm.fingerprint, MemoryCompressor), **kwargs)

    def internalise(self, text: str, doc_id: str = "text") -> torch.Tensor:
        """The document's prefix cache, [layers, 2, kv_heads, m, head_dim]."""
        ids = doc_ids(self.lm.tokenizer, text)[: self.max_doc_tokens]
        if not ids:
            raise DocumentError(f"{doc_id}: empty document, nothing to learn")
        with torch.no_grad():
            return self.net(self.lm.model, self.prompt.prefix + ids).detach()

    def answer(self, question: str, kv: torch.Tensor, max_new_tokens: int = 32) -> str:
        """The closed-book reply to `question` with the prefix before it (no document in the prompt)."""
        return greedy_with_prefix(self.lm, kv, student_prompt(self.lm.tokenizer, question), max_new_tokens)

    def export(self, kv: torch.Tensor, folder: Path, manifest: dict[str, Any]) -> int:
        """Write the prefix as a plain PEFT prefix-tuning adapter folder; returns the bytes of its weights."""
        record = {"design": DESIGN, "base_fingerprint": self.lm.fingerprint, **manifest}
        return write_prefix_adapter(folder, kv, base_model=self.lm.name, manifest=record)
