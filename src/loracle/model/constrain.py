"""Decoding held to a JSON schema: each step's logits masked to the tokens that keep the reply valid.

xgrammar compiles the schema into a grammar over the tokenizer's vocabulary (once per tokenizer and
schema, cached); a matcher then walks the tokens the decoder picks. The reply can only be a prefix of a
document that fits the schema, and the model's stop token is allowed only once the document is whole, so
a reply that ended by itself always parses and validates.

A reply's token budget is kept too, when the caller passes the tokens left: near its end (the last
`CLOSING_WINDOW` tokens), after each token the decoder picks, the shortest way to close the document is
found on a copy of the matcher (closing quotes and brackets first, else the stop token, else the longest
token allowed). While it fits the tokens left, the pick stands; when it would not, the pick is taken back
and the closing found one step earlier (which fitted) is forced instead. So a model that loops inside a long
string or list still ends with a whole document, its last string cut short, as long as the budget holds it
when the window opens.

Strings with a length bound are first rewritten as patterns (loracle.model.json_strings): xgrammar's own rule
for them lets raw control characters through, which is not JSON.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

import torch
import xgrammar as xgr
from transformers import PreTrainedTokenizerBase

from loracle.errors import SchemaError
from loracle.model.chat import stop_token_ids
from loracle.model.json_strings import json_safe_strings

#: the last tokens of a budget within which each pick is checked to leave the document closable
CLOSING_WINDOW = 64
_CLOSERS = frozenset(b'"]}')

#: the "[hh:mm:ss] /path/file.cc:123: " xgrammar puts before its messages
_LOG_PREFIX = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*(Check failed: .*? is false: )?")


class JSONConstraint:
    """One reply's grammar state: `mask` the next logits, `accept` the token picked, `finished` at the end."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, vocab_size: int, schema: dict[str, Any]) -> None:
        """Raises SchemaError, naming the problem, for a schema xgrammar cannot compile."""
        try:
            compiled = _compiled(tokenizer, vocab_size, json.dumps(json_safe_strings(schema)))
        except (RuntimeError, ValueError, TypeError) as exc:  # xgrammar reports every refusal as one of these
            raise SchemaError(f"JSON schema: {schema_problem(exc)}") from exc
        self._matcher = xgr.GrammarMatcher(compiled)
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self._tokens = _token_table(tokenizer, vocab_size)
        self._scratch = xgr.allocate_token_bitmask(1, vocab_size)
        self._fallback: list[int] = []  # a closing from the state before the last token, that fitted the budget
        self._forced: list[int] = []  # the rest of the reply, once the closing is forced

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """`logits` (one step, on the CPU) with every token the grammar forbids at -inf, in place; while the
        closing is forced (see the module docstring), every token but its next one."""
        if self._forced:
            logits.fill_(float("-inf"))
            logits[..., self._forced[0]] = 0.0
            return logits
        self._matcher.fill_next_token_bitmask(self._bitmask)
        xgr.apply_token_bitmask_inplace(logits, self._bitmask)
        return logits

    def accept(self, token: int, remaining: int | None = None) -> int:
        """Advance past `token` and return it; with `remaining` (the budget's tokens left, this one included),
        near the budget's end, past the forced closing's next token instead when the document could no longer
        be closed after `token` (returned then). A token `mask` did not allow is a bug in the caller: raises."""
        if self._forced:
            token = self._forced.pop(0)
        if not self._matcher.accept_token(token):
            raise ValueError(f"token {token} is not allowed by the JSON schema here")
        if remaining is None or remaining > CLOSING_WINDOW or self._forced or self._matcher.is_terminated():
            return token
        path = self.closing(remaining - 1)
        if path is not None:
            self._fallback = path
        elif self._fallback:  # the closing found before this token fitted: take the token back, close instead
            self._matcher.rollback(1)
            token, self._forced = self._fallback[0], self._fallback[1:]
            self._matcher.accept_token(token)
        return token

    def closing(self, limit: int) -> list[int] | None:
        """The tokens that close the document from here, the stop token last, if they are at most `limit`: at
        each step the longest allowed token made only of closing quotes and brackets (one that ends a string
        first), else the stop token, else
        the longest allowed token (a required key, an enum value, a digit)."""
        matcher = self._matcher.fork()
        path: list[int] = []
        while not matcher.is_terminated():
            if len(path) >= limit:
                return None
            matcher.fill_next_token_bitmask(self._scratch)
            token = self._tokens.pick(_unpack(self._scratch[0]), matcher.stop_token_ids)
            if token is None or not matcher.accept_token(token):
                return None
            path.append(token)
        return path

    @property
    def finished(self) -> bool:
        """True once the reply is a whole document (the stop token has been accepted)."""
        return self._matcher.is_terminated()


def _unpack(bits: torch.Tensor) -> torch.Tensor:
    """A packed xgrammar bitmask row (int32 words, bit i of word w = token 32w + i) as a bool per token."""
    return ((bits[:, None] >> torch.arange(32, dtype=torch.int32)) & 1).flatten().bool()


class _TokenTable:
    """Per token: its length in bytes and whether it is made only of closing quotes and brackets."""

    def __init__(self, vocab: list[bytes]) -> None:
        self.length = torch.tensor([len(piece) for piece in vocab], dtype=torch.long)
        self.closer = torch.tensor([bool(piece) and set(piece) <= _CLOSERS for piece in vocab])
        self.quoted = self.closer & torch.tensor([piece[:1] == b'"' for piece in vocab])

    def pick(self, allowed: torch.Tensor, stops: list[int]) -> int | None:
        """The closing step's token among `allowed` (see `JSONConstraint.closing`). Closers that begin with a
        quote come first: inside a string, any other closer (`]]`, `}`) is only more text of the string."""
        allowed = allowed[: len(self.length)]
        for group in (allowed & self.quoted, allowed & self.closer, None, allowed):
            if group is None:
                stop = next((t for t in stops if t < len(allowed) and allowed[t]), None)
                if stop is not None:
                    return stop
                continue
            if group.any():
                return int(torch.where(group, self.length, -1).argmax())
        return None


@lru_cache(maxsize=4)
def _info(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> xgr.TokenizerInfo:
    """The tokenizer's vocabulary as xgrammar sees it, with loracle's stop tokens ending a finished reply."""
    return xgr.TokenizerInfo.from_huggingface(
        tokenizer, vocab_size=vocab_size, stop_token_ids=sorted(stop_token_ids(tokenizer))
    )


@lru_cache(maxsize=4)
def _token_table(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> _TokenTable:
    return _TokenTable(list(_info(tokenizer, vocab_size).decoded_vocab))


@lru_cache(maxsize=4)
def _compiler(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> xgr.GrammarCompiler:
    return xgr.GrammarCompiler(_info(tokenizer, vocab_size), max_threads=1)


@lru_cache(maxsize=64)
def _compiled(tokenizer: PreTrainedTokenizerBase, vocab_size: int, schema_json: str) -> xgr.CompiledGrammar:
    # compact JSON (no free whitespace): fewer tokens, and no room for a model to loop on blank lines;
    # properties in the schema's order, so the model writes the fields in the order the caller declared them
    compiler = _compiler(tokenizer, vocab_size)
    return compiler.compile_json_schema(schema_json, any_whitespace=False, strict_mode=True)


def schema_problem(exc: Exception) -> str:
    """xgrammar's refusal as one line, without its log prefix or the schema it echoes back."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    line = _LOG_PREFIX.sub("", lines[0] if lines else type(exc).__name__)
    return line.split(". The JSON string is:")[0][:300]
