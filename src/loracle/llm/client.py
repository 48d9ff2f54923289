"""The writer LLM: plain completions, and JSON that fits a pydantic schema (decoded under it locally,
repaired from endpoints)."""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from loracle.errors import LoracleError, validation_problem
from loracle.llm.backends import Backend, EndpointBackend, LocalBackend, StopRule
from loracle.llm.jsonfix import JSONNotFound, extract_json, fit_to_schema, schema_hint
from loracle.llm.schema import decoding_schema

if TYPE_CHECKING:
    from loracle.config import Config
    from loracle.model import LoadedModel, Message

Role = Literal["fast", "writer"]
T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class Usage:
    """How much an LLM was used: calls (retries included), retries, and tokens both ways."""

    calls: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __sub__(self, earlier: Usage) -> Usage:
        return Usage(
            self.calls - earlier.calls,
            self.retries - earlier.retries,
            self.prompt_tokens - earlier.prompt_tokens,
            self.completion_tokens - earlier.completion_tokens,
        )


@dataclass(frozen=True)
class JSONRequest(Generic[T]):
    """One structured call as its caller makes it: the prompt, the answer's shape and its bounds.

    Callers build these in one function each, so the structured benchmark asks exactly what they ask.
    """

    messages: list[Message]
    schema: type[T]
    max_tokens: int = 256
    max_items: int = 8
    max_chars: int = 200


class LLM:
    """One role's model. Thread-safe: calls are serialised (one local model decodes one thing at a time)."""

    def __init__(self, backend: Backend, role: str = "writer") -> None:
        self.backend = backend
        self.role = role
        #: completions requested so far (a JSON retry counts as a call), and tokens both ways
        self.calls = 0
        self.retries = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._lock = threading.Lock()
        # a backend written before stop rules existed takes three arguments; it just runs to max_tokens
        self._backend_stops = "stop" in inspect.signature(backend.chat).parameters

    @property
    def name(self) -> str:
        return self.backend.name

    def usage(self) -> Usage:
        """A snapshot; subtract two to get the cost of what happened between them."""
        return Usage(self.calls, self.retries, self.prompt_tokens, self.completion_tokens)

    def complete(
        self,
        messages: Sequence[Message],
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: StopRule | None = None,
        json_schema: dict | None = None,
    ) -> str:
        """The model's answer; `stop(text_so_far)` may end it early (e.g. after enough sentences).

        `json_schema` (backends that constrain decoding only) holds the answer to JSON valid for it.
        """
        extra: dict = {}
        if stop is not None and self._backend_stops:
            extra["stop"] = stop
        if json_schema is not None:
            extra["json_schema"] = json_schema
        with self._lock:
            result = self.backend.chat(messages, max_tokens, temperature, **extra)
            self.calls += 1
            self.prompt_tokens += result.prompt_tokens
            self.completion_tokens += result.completion_tokens
        return result.text

    @property
    def is_endpoint(self) -> bool:
        """Whether completions come from an OpenAI-compatible endpoint (a model loracle did not ship)."""
        return isinstance(self.backend, EndpointBackend)

    @property
    def constrains_json(self) -> bool:
        """Whether the backend decodes under a JSON schema (the local model); else answers are repaired."""
        return getattr(self.backend, "constrains_json", False)

    def complete_json(
        self,
        messages: Sequence[Message],
        schema: type[T],
        max_tokens: int = 256,
        max_items: int = 8,
        max_chars: int = 200,
    ) -> T:
        """An instance of `schema` from the model's answer, its lists and strings at most `max_items` and
        `max_chars` long (loracle.llm.schema).

        The local model is decoded under the schema, its document closed in time as the budget nears its end
        (loracle.model.constrain), so its answer is valid JSON of that shape unless the budget cannot hold even
        its shortest form. Other backends (an endpoint) get the schema as a hint, their answer is
        repaired, and a broken one gets one retry that shows the model its error. Raises LoracleError when
        no valid answer came, so a caller never writes a page from a malformed answer.
        """
        prompt = list(messages)
        prompt[-1] = {
            "role": prompt[-1]["role"],
            "content": f"{prompt[-1]['content']}\n\nAnswer with JSON only, shaped like: {schema_hint(schema)}",
        }
        if self.constrains_json:
            bounded = decoding_schema(schema, max_items, max_chars)
            answer = self.complete(prompt, max_tokens=max_tokens, json_schema=bounded)
            try:
                return schema.model_validate_json(answer)
            except ValidationError as exc:
                raise LoracleError(
                    f"{self.name}: the model's {schema.__name__} JSON did not finish within {max_tokens} tokens"
                ) from exc
        return self._repaired_json(prompt, schema, max_tokens)

    def ask_json(self, request: JSONRequest[T]) -> T:
        """`complete_json` for a request a caller built."""
        return self.complete_json(
            request.messages, request.schema, request.max_tokens, request.max_items, request.max_chars
        )

    def _repaired_json(self, prompt: list[Message], schema: type[T], max_tokens: int) -> T:
        answer = self.complete(prompt, max_tokens=max_tokens)
        try:
            return parse_answer(answer, schema)
        except ValueError as first_error:
            problem = str(first_error)
        retry = [
            *prompt,
            {"role": "assistant", "content": answer[:2000]},
            {
                "role": "user",
                "content": f"That was not valid: {problem}. Reply again with only the JSON object, "
                f"shaped like: {schema_hint(schema)}",
            },
        ]
        self.retries += 1
        second = self.complete(retry, max_tokens=max_tokens)
        try:
            return parse_answer(second, schema)
        except ValueError as exc:
            raise LoracleError(
                f"{self.name}: the model's answer is not valid {schema.__name__} JSON after one retry ({exc})"
            ) from exc


def parse_answer(answer: str, schema: type[T]) -> T:
    """Extract, repair and validate; a ValueError says briefly what is wrong (it is shown to the model)."""
    try:
        value = extract_json(answer)
    except JSONNotFound as exc:
        raise ValueError(str(exc)) from exc
    try:
        return schema.model_validate(fit_to_schema(value, schema))
    except ValidationError as exc:
        raise ValueError(f"{validation_problem(exc, 'the object')} (got {json.dumps(value)[:120]})") from exc


def make_llm(config: Config, role: Role = "writer", lm: LoadedModel | None = None) -> LLM:
    """The LLM for `role`: its OpenAI-compatible endpoint when one is configured, else the local model.

    `lm` (an already loaded model) is used instead of loading config.model.base again.
    """
    if role not in ("fast", "writer"):
        raise LoracleError(f"unknown llm role {role!r} (expected 'fast' or 'writer')")
    endpoint = getattr(config.llm, role)
    if endpoint.base_url:
        return LLM(EndpointBackend(endpoint), role)
    return LLM(LocalBackend(config.model.base, lm), role)


def writer_and_fast(config: Config, lm: LoadedModel | None = None) -> tuple[LLM, LLM]:
    """The writer and the fast LLM; the same LLM object (one call counter) when both are the same model."""
    writer = make_llm(config, "writer", lm)
    fast = make_llm(config, "fast", lm)
    return writer, writer if fast.backend.name == writer.backend.name else fast
