"""The most tokens one document may have to be compiled into an adapter.

A learner that emits a LoRA per 1,024-token chunk makes ~2 MB per chunk (the hypernetwork), so a 19 MB source
would take minutes and gigabytes of memory to become a ~9 GB adapter. Documents over the limit
(`[compile] max_document_tokens` in loracle.toml) are refused by name before any model work. Counting stops
soon after the limit, so refusing a huge document costs about as much as compiling one at the limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from loracle.documents import Document
from loracle.errors import DocumentError

#: characters of text first counted per token of the limit (English runs ~4 characters a token)
_FIRST_CHARS_PER_TOKEN = 4


def count_tokens_with(tokenizer) -> Callable[[str], int]:
    """Token counts by a Hugging Face tokenizer, without special tokens."""
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def utf8_estimate(text: str) -> int:
    """A count for when no tokenizer is known: about four bytes of UTF-8 a token."""
    return -(-len(text.encode("utf-8")) // 4)


def tokens_up_to(text: str, limit: int, count: Callable[[str], int]) -> tuple[int, bool]:
    """(tokens, over): the exact count when `text` has at most `limit` tokens; else an estimate of the whole
    text's count from the first stretch that passes the limit (so a 19 MB text is never tokenized whole)."""
    chars = max(1, limit * _FIRST_CHARS_PER_TOKEN)
    while True:
        prefix = text[:chars]
        tokens = count(prefix)
        if tokens > limit:
            return round(tokens * len(text) / len(prefix)), True
        if len(prefix) == len(text):
            return tokens, False
        chars *= 2


@dataclass(frozen=True)
class DocumentLimit:
    max_tokens: int
    count: Callable[[str], int] = utf8_estimate

    def check(self, doc: Document) -> None:
        """Refuse, in one line naming the document, its size and the limit, a document over the limit."""
        tokens, over = tokens_up_to(doc.text, self.max_tokens, self.count)
        if over:
            where = doc.path if doc.path is not None else doc.id
            raise DocumentError(
                f"{where}: too large to compile ({_size(doc):,} bytes, about {tokens:,} tokens; "
                f"the limit is {self.max_tokens:,}, [compile] max_document_tokens in loracle.toml): "
                "split it or raise the limit"
            )


def _size(doc: Document) -> int:
    """The document's file size, or its text's when it has no file."""
    try:
        return doc.path.stat().st_size if doc.path is not None else len(doc.text.encode("utf-8"))
    except OSError:
        return len(doc.text.encode("utf-8"))
