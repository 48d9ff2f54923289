"""JSON strings with a length bound, as patterns xgrammar decodes to valid JSON.

xgrammar's rule for a string with minLength / maxLength allows raw control characters (U+0000-U+001F), which
JSON forbids inside a string, so a random model's reply can fail to parse; its rule for a pattern keeps to the
characters the pattern names. `string_pattern` names JSON's string characters, counting an escape as one
character as the decoded string does, so that the bounds hold for the decoded string.
"""

from __future__ import annotations

import copy
from typing import Any


def string_pattern(low: int = 0, high: int | None = None) -> str:
    """A regex for JSON string content of `low` to `high` characters (None: no limit): no quote, backslash or
    control character except as an escape, which counts as one character as it does in the decoded string, and
    no surrogate code point (xgrammar would let its three UTF-8 bytes through, which decode as three U+FFFD)."""
    return rf'^([^"\\\x00-\x1f\ud800-\udfff]|\\["\\/bfnrt]){{{low},{"" if high is None else high}}}$'


def json_safe_strings(schema: Any) -> Any:
    """A copy of `schema` whose length-bounded strings (with no pattern, format, enum or const of their own) are
    held to `string_pattern` instead of minLength / maxLength: the same strings, less those with u-escapes."""
    schema = copy.deepcopy(schema)
    _safe_strings(schema)
    return schema


def _safe_strings(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _safe_strings(item)
        return
    if not isinstance(node, dict):
        return
    low, high = node.get("minLength", 0), node.get("maxLength")
    if (
        node.get("type") == "string"
        and {"minLength", "maxLength"} & node.keys()
        and not {"pattern", "format", "enum", "const"} & node.keys()
        and _is_length(low)
        and (high is None or _is_length(high))
    ):
        node.pop("minLength", None)
        node.pop("maxLength", None)
        node["pattern"] = string_pattern(low, high)
    for value in node.values():
        _safe_strings(value)


def _is_length(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
