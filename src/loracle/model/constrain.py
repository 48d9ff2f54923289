"""Decoding held to a JSON schema: each step's logits masked to the tokens that keep the reply valid.

xgrammar compiles the schema into a grammar over the tokenizer's vocabulary (once per tokenizer and
schema, cached); a matcher then walks the tokens the decoder picks. The reply can only be a prefix of a
document that fits the schema, and the model's stop token is allowed only once the document is whole, so
a reply that ended by itself always parses and validates. Only a token budget that runs out first can
leave it unfinished (`finished` says which).

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

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """`logits` (one step, on the CPU) with every token the grammar forbids at -inf, in place."""
        self._matcher.fill_next_token_bitmask(self._bitmask)
        xgr.apply_token_bitmask_inplace(logits, self._bitmask)
        return logits

    def accept(self, token: int) -> None:
        """Advance past `token`; a token `mask` did not allow is a bug in the caller, so it raises."""
        if not self._matcher.accept_token(token):
            raise ValueError(f"token {token} is not allowed by the JSON schema here")

    @property
    def finished(self) -> bool:
        """True once the reply is a whole document (the stop token has been accepted)."""
        return self._matcher.is_terminated()


@lru_cache(maxsize=4)
def _compiler(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> xgr.GrammarCompiler:
    """The tokenizer's vocabulary as xgrammar sees it, with loracle's stop tokens ending a finished reply."""
    info = xgr.TokenizerInfo.from_huggingface(
        tokenizer, vocab_size=vocab_size, stop_token_ids=sorted(stop_token_ids(tokenizer))
    )
    return xgr.GrammarCompiler(info, max_threads=1)


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
