"""OpenAI's `response_format` (JSON mode) as the JSON schema a reply is decoded under, or None for plain text.

- `{"type": "text"}` (or no response_format): no constraint.
- `{"type": "json_object"}`: any JSON object (OpenAI's JSON mode).
- `{"type": "json_schema", "json_schema": {"name", "description", "schema", "strict"}}`: that schema. The reply
  follows it whatever `strict` says (decoding is constrained either way); no `schema` means any JSON value.
- llama.cpp's server spelling, a `schema` beside `type` (json_object or json_schema), is taken as the schema.

A malformed value is a 400 from request validation; a schema xgrammar cannot follow is a 400 from
`loracle.model.generate.check_json_schema`, before any reply starts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: OpenAI's JSON mode: the reply is a JSON object, any keys
ANY_OBJECT: dict[str, Any] = {"type": "object"}


class JSONSchemaSpec(BaseModel):
    """OpenAI's `response_format.json_schema`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """One model for the three types (not a tagged union), so a problem's path reads `response_format.<field>`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaSpec | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")  # llama.cpp's server

    @model_validator(mode="after")
    def _fields_fit_the_type(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None and self.schema_ is None:
            raise ValueError("type json_schema needs a json_schema field ({name, schema})")
        if self.type != "json_schema" and self.json_schema is not None:
            raise ValueError(f"json_schema is for type json_schema, not {self.type}")
        if self.type == "text" and self.schema_ is not None:
            raise ValueError("schema is for type json_object or json_schema, not text")
        return self

    def schema_for_reply(self) -> dict[str, Any] | None:
        """The JSON schema the reply must follow; None for plain text."""
        if self.type == "text":
            return None
        inner = self.json_schema.schema_ if self.json_schema is not None else None
        schema = inner if inner is not None else self.schema_
        if schema is not None:
            return schema
        return ANY_OBJECT if self.type == "json_object" else {}
