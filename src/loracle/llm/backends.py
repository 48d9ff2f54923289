"""Where completions come from: the local model in this process, or an OpenAI-compatible HTTP endpoint."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import httpx

from loracle.config import EndpointConfig
from loracle.errors import LoracleError

if TYPE_CHECKING:
    from loracle.model import LoadedModel, Message


StopRule = Callable[[str], bool]


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Backend(Protocol):
    """Turns chat messages into one completion."""

    name: str

    def chat(
        self, messages: Sequence[Message], max_tokens: int, temperature: float, stop: StopRule | None = None
    ) -> Completion:
        """`stop(text_so_far)` returning True ends generation early (backends that stream honour it)."""
        ...


class LocalBackend:
    """The base model in this process; loaded on first use, once per spec, and shared by both roles.

    It decodes structured answers under their JSON schema (loracle.model.constrain), so they need no repair.
    """

    constrains_json = True

    _loaded: dict[str, LoadedModel] = {}  # noqa: RUF012  (a process-wide cache, on purpose)
    _lock = threading.Lock()

    def __init__(self, spec: str = "embedded", lm: LoadedModel | None = None) -> None:
        self.spec = spec
        self._lm = lm
        self.name = f"local:{lm.name if lm is not None else spec}"

    @property
    def lm(self) -> LoadedModel:
        if self._lm is None:
            with self._lock:
                if self.spec not in self._loaded:
                    from loracle.model import load_model

                    self._loaded[self.spec] = load_model(self.spec)
                self._lm = self._loaded[self.spec]
        return self._lm

    def chat(
        self,
        messages: Sequence[Message],
        max_tokens: int,
        temperature: float,
        stop: StopRule | None = None,
        json_schema: dict | None = None,
    ) -> Completion:
        """`json_schema`: decode only JSON valid for it (then `stop` should be None: it would cut the JSON)."""
        from loracle.model import GenerationConfig, stream_chat

        config = GenerationConfig(max_new_tokens=max_tokens, temperature=temperature, seed=0, json_schema=json_schema)
        stream = stream_chat(self.lm, messages, config)
        pieces: list[str] = []
        for piece in stream:
            pieces.append(piece)
            if stop is not None and stop("".join(pieces)):
                break
        return Completion("".join(pieces).strip(), stream.stats.prompt_tokens, stream.stats.new_tokens)


class EndpointBackend:
    """POST /chat/completions on an OpenAI-compatible server (Ollama, llama.cpp server, vLLM, ...).

    `base_url` is the API root as the OpenAI client takes it, e.g. http://localhost:11434/v1.
    """

    def __init__(self, endpoint: EndpointConfig, timeout_s: float = 300.0, client: httpx.Client | None = None) -> None:
        if not endpoint.model:
            raise LoracleError(f"llm endpoint {endpoint.base_url}: no model name (set llm.<role>.model)")
        self.endpoint = endpoint
        self.url = endpoint.base_url.rstrip("/") + "/chat/completions"
        self.name = f"{endpoint.model}@{endpoint.base_url}"
        self._client = client or httpx.Client(timeout=timeout_s)

    def chat(
        self, messages: Sequence[Message], max_tokens: int, temperature: float, stop: StopRule | None = None
    ) -> Completion:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.endpoint.api_key_env, "") if self.endpoint.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        body = {
            "model": self.endpoint.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": False,
        }
        try:
            response = self._client.post(self.url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise LoracleError(f"llm endpoint {self.url}: cannot connect ({type(exc).__name__}: {exc})") from exc
        if response.status_code != 200:
            raise LoracleError(f"llm endpoint {self.url}: HTTP {response.status_code}: {_error_text(response)}")
        try:
            data = response.json()
            text = data["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LoracleError(f"llm endpoint {self.url}: not an OpenAI chat completion response") from exc
        usage = data.get("usage") or {}
        return Completion(text.strip(), int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))

    def close(self) -> None:
        self._client.close()


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
        err = data.get("error", data) if isinstance(data, dict) else data
        message = err.get("message", err) if isinstance(err, dict) else err
        return str(message)[:200]
    except ValueError:
        return response.text[:200].replace("\n", " ")
