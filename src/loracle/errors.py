"""User-facing errors: each carries one line that names the file or thing and the problem."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class LoracleError(Exception):
    """An error the CLI prints as a single line (no traceback unless --debug)."""


class ModelLoadError(LoracleError):
    """The model path, file or id could not be loaded as a causal language model."""


class AdapterError(LoracleError):
    """An adapter is missing, malformed, or made for another base model."""


class SchemaError(LoracleError):
    """A JSON schema that constrained decoding cannot follow (malformed, or a feature xgrammar refuses)."""


class DocumentError(LoracleError):
    """A source document cannot be read (missing, binary, bad encoding, empty, broken frontmatter)."""


def validation_problem(exc: ValidationError, whole: str = "") -> str:
    """The first problem pydantic found, as "field.path: message" for an error line; `whole` names the place
    when the problem is with the value as a whole (an empty path)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or whole
    return f"{where}: {first['msg']}"
