"""The JSON schema a local model's structured reply is decoded under, built from the caller's pydantic model.

Bounded, so that a constrained reply always ends: every list holds at most `max_items` items, every free
string at most `max_chars` characters and every integer is within ±10^9 (tighter limits the model states
are kept); floats are left unbounded, so a schema for local decoding should not hold any. Every field is
required, so the model writes each one in the model's field order instead of stopping at `{}`.
The reply still validates against the pydantic model unchanged: the bounds only narrow it.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from loracle.model.json_strings import string_pattern

_INT_LIMIT = 10**9


def decoding_schema(model: type[BaseModel], max_items: int = 8, max_chars: int = 200) -> dict[str, Any]:
    """`model`'s JSON schema with every list, free string, integer and object bounded as above."""
    schema = copy.deepcopy(model.model_json_schema())
    _bound(schema, max_items, max_chars)
    return schema


def _bound(node: Any, max_items: int, max_chars: int) -> None:
    if isinstance(node, list):
        for item in node:
            _bound(item, max_items, max_chars)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "array":
        node["maxItems"] = min(node.get("maxItems", max_items), max_items)
    elif kind == "string" and not {"enum", "const", "pattern", "format"} & node.keys():
        # a pattern, not maxLength: xgrammar's own string rule lets raw control characters through, which
        # strict JSON parsers (pydantic's) refuse; the pattern counts an escape as one character
        limit = min(node.pop("maxLength", max_chars), max_chars)
        node["pattern"] = string_pattern(0, limit)
    elif kind == "integer":  # digits are a string too: a model could write them forever
        node["minimum"] = max(node.get("minimum", -_INT_LIMIT), -_INT_LIMIT)
        node["maximum"] = min(node.get("maximum", _INT_LIMIT), _INT_LIMIT)
    elif kind == "object" and "properties" in node:
        node["required"] = list(node["properties"])
        node["additionalProperties"] = False
    for value in node.values():
        _bound(value, max_items, max_chars)
