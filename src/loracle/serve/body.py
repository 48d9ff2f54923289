"""The base of every JSON request body: refuses text that is not valid Unicode, wherever it is.

JSON may spell a lone surrogate ("\\ud800"); Python's json module accepts it, but the tokenizer, UTF-8
encoding and every file write fail on it. It is refused here with a 400 naming the field, so no route
has to think of it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, model_validator
from pydantic_core import PydanticCustomError


class RequestBody(BaseModel):
    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        where = _lone_surrogate(data, ())
        if where is not None:
            raise PydanticCustomError(
                "invalid_unicode", "{where}: not valid Unicode text (a lone surrogate)", {"where": where or "body"}
            )
        return data


def _lone_surrogate(value: Any, path: tuple[str, ...]) -> str | None:
    """The dotted path of the first string (or key) holding a lone surrogate, else None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return ".".join(path)
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _lone_surrogate(key, (*path, "<key>")) if isinstance(key, str) else None
            found = found if found is not None else _lone_surrogate(item, (*path, str(key)))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate(item, (*path, str(index)))
            if found is not None:
                return found
    return None
