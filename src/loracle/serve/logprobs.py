"""Token log probabilities in the OpenAI API's two shapes: chat (`logprobs.content`) and legacy completions.

A token's text and bytes: with a byte-level BPE tokenizer (GPT-2's, SmolLM2's) the token's own bytes, so a
token holding half of a UTF-8 character reports those bytes (its text shows U+FFFD, as OpenAI's does);
with other tokenizers, the token decoded alone.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from loracle.model.generate import TokenLogprob


@functools.cache
def _byte_of_char() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: each byte is written as one printable character in a token."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: b for b in printable}
    for extra, b in enumerate(b for b in range(256) if b not in chars):
        chars[b] = 256 + extra
    return {chr(c): b for b, c in chars.items()}


class LogprobFormatter:
    """Turns TokenLogprob records of one reply into response fields; keeps the text offset of a stream."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self.byte_level = type(getattr(backend, "decoder", None)).__name__ == "ByteLevel"
        self.offset = 0  # characters of the completion so far (legacy `text_offset`)
        self._seen: dict[int, tuple[str, list[int]]] = {}

    def token(self, token_id: int) -> tuple[str, list[int]]:
        """The token's text and its UTF-8 bytes."""
        if token_id not in self._seen:
            self._seen[token_id] = self._token(token_id)
        return self._seen[token_id]

    def _token(self, token_id: int) -> tuple[str, list[int]]:
        if self.byte_level:
            piece = self.tokenizer.convert_ids_to_tokens(token_id)
            table = _byte_of_char()
            if isinstance(piece, str) and piece and all(ch in table for ch in piece):
                data = bytes(table[ch] for ch in piece)
                return data.decode("utf-8", errors="replace"), list(data)
        text = self.tokenizer.decode([token_id])
        return text, list(text.encode("utf-8"))

    def _item(self, token_id: int, logprob: float) -> dict:
        text, data = self.token(token_id)
        return {"token": text, "logprob": logprob, "bytes": data}

    def chat(self, entries: Sequence[TokenLogprob]) -> dict:
        """`choices[].logprobs` of a chat completion (or chunk)."""
        content = [
            {**self._item(e.token, e.logprob), "top_logprobs": [self._item(t, lp) for t, lp in e.top]} for e in entries
        ]
        return {"content": content, "refusal": None}

    def completion(self, entries: Sequence[TokenLogprob]) -> dict:
        """`choices[].logprobs` of a text completion (or chunk): parallel lists, offsets counted across calls."""
        tokens, offsets = [], []
        for entry in entries:
            text = self.token(entry.token)[0]
            tokens.append(text)
            offsets.append(self.offset)
            self.offset += len(text)
        return {
            "tokens": tokens,
            "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [{self.token(t)[0]: lp for t, lp in e.top} for e in entries],
            "text_offset": offsets,
        }
