"""Incremental detokenisation: text pieces for a growing list of token ids, O(1) work per token.

Decoding all generated ids at every step costs O(n) per token (O(n²) per answer). Instead only a short
window is decoded: the last few already-emitted tokens (so that tokenizers which drop a leading space or
merge bytes across tokens decode in context) plus the new ones. A piece is held back while it ends in an
incomplete UTF-8 character (the replacement character U+FFFD), e.g. the first byte token of a CJK character.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

#: tokens of already-emitted context decoded with the new ones
CONTEXT_TOKENS = 4


class IncrementalDetokenizer:
    """Feed token ids one at a time with `add`; it returns the text that became complete ('' if none)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self.prefix_offset = 0  # start of the context window
        self.read_offset = 0  # tokens up to here have been emitted as text

    def add(self, token: int) -> str:
        self.ids.append(token)
        prefix_text = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full_text = self._decode(self.ids[self.prefix_offset :])
        if full_text.endswith("\ufffd") or len(full_text) <= len(prefix_text):
            return ""  # an incomplete character (or nothing visible) so far: wait for more bytes
        piece = full_text[len(prefix_text) :]
        self.read_offset = len(self.ids)
        self.prefix_offset = max(0, self.read_offset - CONTEXT_TOKENS)
        return piece

    def text(self) -> str:
        """Everything decoded so far, in one piece (for checks; not used while streaming)."""
        return self._decode(self.ids)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens) if ids else ""
