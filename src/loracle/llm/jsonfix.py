"""Pull one JSON value out of an endpoint model's answer and bend it into a schema's shape.

The local model needs none of this: it is decoded under the schema (loracle.model.constrain). Endpoint
models wrap JSON in prose or code fences, leave trailing commas, use single quotes, stop before
closing brackets, capitalise keys, or answer a list where a list field was asked for. `json_repair`
fixes the syntax; `fit_to_schema` fixes the shape of flat schemas (missing keys come from defaults
when pydantic validates).
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any

import json_repair
from pydantic import BaseModel

_FENCE_RE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)(?:```|$)", re.DOTALL)


class JSONNotFound(ValueError):
    """The answer holds nothing that parses as a JSON object or list."""


def extract_json(text: str) -> Any:
    """The first JSON object (or list) in `text`: inside a code fence if there is one, else from the first bracket."""
    candidates: list[str] = [m.group(1) for m in _FENCE_RE.finditer(text) if m.group(1).strip()]
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if starts:
        candidates.append(text[min(starts) :])
    empty: Any = None
    for candidate in candidates:
        value = json_repair.loads(candidate.strip())
        if isinstance(value, dict | list):
            if value:
                return value
            empty = value if empty is None else empty
    if empty is not None:
        return empty
    raise JSONNotFound("no JSON object in the answer")


def fit_to_schema(value: Any, schema: type[BaseModel]) -> Any:
    """Reshape a parsed answer toward `schema`: match keys case-insensitively, wrap lone values in lists, etc."""
    fields = schema.model_fields
    if isinstance(value, list):
        value = _list_as_object(value, schema)
    if not isinstance(value, dict):
        return value
    by_key = {_norm(name): name for name in fields}
    for name, info in fields.items():
        if info.alias:
            by_key[_norm(info.alias)] = name
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = by_key.get(_norm(str(key)))
        if name is None or name in out:
            continue
        out[name] = _fit_value(item, fields[name].annotation)
    return out


def _list_as_object(value: list, schema: type[BaseModel]) -> Any:
    """A bare list answers a one-list-field schema; a list holding one object is that object."""
    list_fields = [name for name, info in schema.model_fields.items() if _is_list(info.annotation)]
    if len(list_fields) == 1 and not (len(value) == 1 and isinstance(value[0], dict)):
        return {list_fields[0]: value}
    if value and isinstance(value[0], dict):
        return value[0]
    return value


def _fit_value(item: Any, annotation: Any) -> Any:
    if _is_list(annotation):
        if item is None:
            return []
        if isinstance(item, str):
            parts = [p.strip(" -*•\t") for p in re.split(r"[\n;]|,(?![^()]*\))", item)]
            return [p for p in parts if p]
        if isinstance(item, list):
            inner = _list_item_type(annotation)
            if inner is str:
                return [_as_text(x) for x in item if _as_text(x)]
            return item
        return [item]
    if annotation is str:
        if item is None:
            return ""
        if isinstance(item, list):
            return " ".join(_as_text(x) for x in item)
        return _as_text(item)
    return item


def _as_text(x: Any) -> str:
    if isinstance(x, dict):
        # {"name": "Ilse Marrow", ...} -> the first string value
        for v in x.values():
            if isinstance(v, str) and v.strip():
                return v.strip()
        return ""
    return "" if x is None else str(x).strip()


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (list, tuple, set) or annotation in (list, tuple, set)


def _list_item_type(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    return args[0] if args else Any


def _norm(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


def schema_hint(schema: type[BaseModel]) -> str:
    """A compact example object for the prompt, e.g. {"title": "...", "tags": ["..."]}."""
    parts = []
    for name, info in schema.model_fields.items():
        ann = info.annotation
        if _is_list(ann):
            parts.append(f'"{name}": ["..."]')
        elif ann is bool:
            parts.append(f'"{name}": true')
        elif ann in (int, float) or _optional_of(ann) in (int, float):
            parts.append(f'"{name}": 0')
        else:
            parts.append(f'"{name}": "..."')
    return "{" + ", ".join(parts) + "}"


def _optional_of(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else None
    return None
