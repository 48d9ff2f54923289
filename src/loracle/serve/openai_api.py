"""OpenAI-compatible endpoints: chat and text completions (streamed or not), models, adapter load/unload."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

import torch
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from loracle.adapters.pool import AdapterSpec
from loracle.errors import LoracleError
from loracle.model.chat import encode_chat
from loracle.model.generate import GenerationConfig, TokenLogprob, check_json_schema
from loracle.serve.body import RequestBody
from loracle.serve.disconnect import unless_disconnected
from loracle.serve.embeddings import EMBEDDING_MODEL
from loracle.serve.errors import ApiError, as_api_error, error_body, public_message
from loracle.serve.generation import Finish, Sampling, Tokens, generation_steps
from loracle.serve.logprobs import LogprobFormatter
from loracle.serve.response_format import ResponseFormat
from loracle.serve.state import ServerState, get_state

router = APIRouter(prefix="/v1")
#: the model that answers from the knowledge base's compiled adapters, routed per question (loracle.asking)
KB_MODEL = "kb"


class AdapterRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=128)
    weight: float = Field(1.0, ge=-4.0, le=4.0)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str = ""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content if part.type == "text")
        return self.content or ""


class SamplingRequest(RequestBody):
    """The fields loracle honours; other OpenAI fields are accepted and ignored.

    Without `temperature` the reply is what the model's own generation config asks for, and greedy when it
    asks for no sampling (as SmolLM2's does): small models sampled at OpenAI's default of 1.0 ramble.
    `top_p`, `top_k` and `min_p` (vLLM's and llama.cpp's extensions) apply only when sampling (a temperature
    above 0); `repetition_penalty` always. `logprobs` are those of the distribution each token was picked
    from, before temperature and truncation (as vLLM reports them). `response_format` (JSON mode, a JSON
    schema) constrains decoding (loracle.serve.response_format). What loracle cannot do is refused with a 400
    naming the field: n above 1, a schema xgrammar cannot follow.
    """

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=300)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1, le=1_000_000)  # vLLM's -1 and llama.cpp's 0: no limit
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=10.0)
    n: int = Field(1, ge=1, le=128)
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)
    stop: str | list[str] | None = None
    logit_bias: dict[str, float] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    adapters: list[AdapterRef] = Field(default_factory=list, max_length=16)

    def generation_config(self, default_max: int, defaults: Sampling) -> GenerationConfig:
        """The decoding this request asks for; `defaults` fill in the temperature and top_p it leaves out."""
        self.check_supported()
        bias: dict[int, float] = {}
        for key, value in (self.logit_bias or {}).items():
            if not key.lstrip("-").isdigit():
                raise ApiError(400, f"logit_bias: {key!r} is not a token id", param="logit_bias")
            bias[int(key)] = max(-100.0, min(100.0, float(value)))
        return GenerationConfig(
            max_new_tokens=self.max_completion_tokens or self.max_tokens or default_max,
            temperature=defaults.temperature if self.temperature is None else self.temperature,
            top_p=defaults.top_p if self.top_p is None else self.top_p,
            top_k=max(0, self.top_k or 0),
            min_p=self.min_p or 0.0,
            repetition_penalty=self.repetition_penalty or 1.0,
            seed=self.seed,
            logit_bias=bias,
            logprobs=self.logprob_count(),
            json_schema=self.response_format.schema_for_reply() if self.response_format else None,
        )

    def logprob_count(self) -> int | None:
        """How many alternatives to report per token with its log probability (None: no logprobs)."""
        if self.top_logprobs is not None and not self.logprobs:
            raise ApiError(400, "top_logprobs: needs logprobs set to true", param="top_logprobs")
        return (self.top_logprobs or 0) if self.logprobs else None

    def check_supported(self) -> None:
        """Refuse, with a 400 naming the field, what loracle accepts in OpenAI's API but cannot do."""
        if self.n != 1:
            raise ApiError(400, f"n: {self.n} choices asked for; loracle returns one (n=1)", param="n")

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4:
            raise ApiError(400, "stop: at most 4 stop sequences", param="stop")
        return stops

    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class ChatRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)


class CompletionRequest(SamplingRequest):
    prompt: str | list[str]
    logprobs: int | None = Field(None, ge=0, le=20)  # the legacy API: how many alternatives per token

    def logprob_count(self) -> int | None:
        if self.top_logprobs is not None:
            raise ApiError(400, "top_logprobs: completions take logprobs=<count> instead", param="top_logprobs")
        return self.logprobs

    def prompt_text(self) -> str:
        if isinstance(self.prompt, list):
            if len(self.prompt) != 1:
                raise ApiError(400, "prompt: exactly one prompt per request", param="prompt")
            return self.prompt[0]
        return self.prompt


class AdapterAction(RequestBody):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=128)


@router.get("/models")
async def list_models(state: ServerState = Depends(get_state)) -> dict:
    created = int(time.time())
    data = [{"id": state.base_id, "object": "model", "created": created, "owned_by": "loracle", "root": state.base_id}]
    if state.answerer is not None:
        data.append(
            {
                "id": KB_MODEL,
                "object": "model",
                "created": created,
                "owned_by": "loracle",
                "root": state.base_id,
                "parent": state.base_id,
                "description": "the knowledge base's compiled adapters, routed to each question",
            }
        )
    data.append(
        {
            "id": EMBEDDING_MODEL,
            "object": "model",
            "created": created,
            "owned_by": "loracle",
            "root": EMBEDDING_MODEL,
            "description": "the embedding model of loracle's search, at /v1/embeddings",
        }
    )
    loaded = set(state.pool.loaded())
    for adapter_id in await run_in_threadpool(state.catalog.ids):
        data.append(
            {
                "id": adapter_id,
                "object": "model",
                "created": created,
                "owned_by": "loracle",
                "root": state.base_id,
                "parent": state.base_id,
                "loaded": adapter_id in loaded,
            }
        )
    return {"object": "list", "data": data}


@router.post("/adapters/load")
async def load_adapter(body: AdapterAction, state: ServerState = Depends(get_state)) -> dict:
    _checked(lambda: state.catalog.folder_for(body.id), "id")
    prefixes = state.prefixes
    if prefixes is not None and await run_in_threadpool(_checked, lambda: prefixes.is_prefix(body.id), "id"):
        await run_in_threadpool(_checked, lambda: prefixes.cache(body.id), "id")  # read and checked, kept
    else:
        await run_in_threadpool(state.pool.ensure_loaded, body.id)
    return {"id": body.id, "loaded": True, "loaded_adapters": state.pool.loaded()}


@router.post("/adapters/unload")
async def unload_adapter(body: AdapterAction, state: ServerState = Depends(get_state)) -> dict:
    was_loaded = await run_in_threadpool(_checked, lambda: state.pool.unload(body.id), "id")
    if not was_loaded:
        raise ApiError(404, f"{body.id}: not loaded", code="adapter_not_loaded", param="id")
    return {"id": body.id, "loaded": False, "loaded_adapters": state.pool.loaded()}


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatRequest, request: Request, state: ServerState = Depends(get_state)
) -> dict | StreamingResponse:
    """A chat reply, streamed (SSE) or whole; see SamplingRequest for the decoding defaults. With model "kb" the
    last user message is routed to the knowledge base's adapters, and the reply carries what answered in
    `loracle` (in the first chunk of a stream)."""
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    if body.model == KB_MODEL:
        return await _complete_from_kb(request, state, body, messages)
    spec = _checked(lambda: state.spec_for(body.model, [(a.id, a.weight) for a in body.adapters]), "model")
    spec, prefix = await run_in_threadpool(_checked, lambda: state.split_prefixes(spec), "model")
    prompt = await run_in_threadpool(encode_chat, state.lm.tokenizer, messages)  # up to 1 MB of text: off the loop
    return await _complete(request, state, body, spec, prompt, chat=True, prefix=prefix)


async def _complete_from_kb(
    request: Request, state: ServerState, body: ChatRequest, messages: list[dict[str, str]]
) -> dict | StreamingResponse:
    """Model "kb": the knowledge base's answerer routes and builds the prompt; the scheduler decodes it."""
    answerer = state.answerer
    if answerer is None:
        raise ApiError(404, f"{KB_MODEL}: the server has no knowledge base (--kb)", code="model_not_found")
    if body.adapters:
        raise ApiError(400, f"adapters: model {KB_MODEL} chooses its own adapters", param="adapters")
    plan = await run_in_threadpool(_checked, lambda: answerer.plan(messages), "model")
    prefix = await run_in_threadpool(_checked, lambda: answerer.prefix(plan), "model")
    prompt = await run_in_threadpool(encode_chat, state.lm.tokenizer, plan.messages)
    record = plan.record()
    root = state.kb.root if state.kb else None
    record["warnings"] = [public_message(w, root) for w in record["warnings"]]
    return await _complete(
        request,
        state,
        body,
        plan.spec,
        prompt,
        chat=True,
        default_max=answerer.config.max_new_tokens,
        extra=record,
        prefix=prefix,
    )


@router.post("/completions", response_model=None)
async def completions(
    body: CompletionRequest, request: Request, state: ServerState = Depends(get_state)
) -> dict | StreamingResponse:
    """A text completion, streamed (SSE) or whole; see SamplingRequest for the decoding defaults."""
    if body.model == KB_MODEL and state.answerer is not None:
        raise ApiError(400, f"model {KB_MODEL} answers chat completions (/v1/chat/completions) only", param="model")
    spec = _checked(lambda: state.spec_for(body.model, [(a.id, a.weight) for a in body.adapters]), "model")
    spec, prefix = await run_in_threadpool(_checked, lambda: state.split_prefixes(spec), "model")
    prompt = await run_in_threadpool(state.lm.tokenizer.encode, body.prompt_text())
    return await _complete(request, state, body, spec, prompt, chat=False, prefix=prefix)


async def _complete(
    request: Request,
    state: ServerState,
    body: SamplingRequest,
    spec: AdapterSpec,
    prompt: list[int],
    *,
    chat: bool,
    default_max: int | None = None,
    extra: dict | None = None,
    prefix: torch.Tensor | None = None,
) -> dict | StreamingResponse:
    """Generate on the scheduler; a whole reply stops generating if its client disconnects first. `extra` goes
    into the reply as `loracle` (a stream's first chunk); `prefix` (the knowledge base's prefix adapters) goes
    before the prompt."""
    config = body.generation_config(default_max or state.max_new_tokens, state.sampling)
    stops = body.stops()
    limit = getattr(state.lm.model.config, "max_position_embeddings", None) or 1 << 30
    if not prompt:
        raise ApiError(400, "the prompt is empty", param="messages" if chat else "prompt")
    if len(prompt) >= limit:
        raise ApiError(
            400, f"the prompt is {len(prompt)} tokens; this model reads at most {limit}", code="context_length_exceeded"
        )
    if config.json_schema is not None:  # compiled (and cached) now: a schema it cannot follow is a 400, not a 500
        await run_in_threadpool(_check_schema, state, config.json_schema)
    # load before answering: a broken adapter is an error status, not an error in the middle of a stream
    await run_in_threadpool(lambda: [state.pool.ensure_loaded(adapter_id) for adapter_id, _ in spec])
    pieces = state.scheduler.stream(spec, lambda: generation_steps(state.lm, prompt, config, stops, prefix))
    formatter = LogprobFormatter(state.lm.tokenizer) if config.logprobs is not None else None
    reply = _Reply(body.model, chat, state.kb.root if state.kb else None, extra, formatter)
    if body.stream:
        return StreamingResponse(
            reply.sse(pieces, body.include_usage()),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return await unless_disconnected(request, _whole(reply, pieces))


async def _whole(reply: _Reply, pieces: AsyncIterator[Any]) -> dict:
    text, tokens, finish = [], [], None
    try:
        async for piece in pieces:
            if isinstance(piece, Finish):
                finish = piece
            elif isinstance(piece, Tokens):
                tokens.extend(piece.entries)
            else:
                text.append(piece)
    except LoracleError as exc:
        raise as_api_error(exc, "model") from exc
    assert finish is not None
    return reply.whole("".join(text), finish, tokens)


class _Reply:
    """Builds response bodies in the shape of OpenAI's chat.completion / text_completion objects."""

    def __init__(
        self,
        model: str,
        chat: bool,
        root: Path | None = None,
        extra: dict | None = None,
        logprobs: LogprobFormatter | None = None,
    ) -> None:
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.model, self.chat, self.created = model, chat, int(time.time())
        self.root = root  # the knowledge base, which error messages name paths relative to
        self.extra = {"loracle": extra} if extra is not None else {}  # what answered (model "kb")
        self.logprobs = logprobs  # None: the request asked for no logprobs

    def _logprobs(self, entries: list[TokenLogprob]) -> dict | None:
        if self.logprobs is None:
            return None
        return self.logprobs.chat(entries) if self.chat else self.logprobs.completion(entries)

    def _envelope(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    @staticmethod
    def usage(finish: Finish) -> dict:
        total = finish.prompt_tokens + finish.completion_tokens
        return {
            "prompt_tokens": finish.prompt_tokens,
            "completion_tokens": finish.completion_tokens,
            "total_tokens": total,
        }

    def whole(self, text: str, finish: Finish, tokens: list[TokenLogprob]) -> dict:
        logprobs = self._logprobs(tokens)
        if self.chat:
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish.reason}
            body = self._envelope("chat.completion")
        else:
            choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish.reason}
            body = self._envelope("text_completion")
        return {**body, "choices": [choice], "usage": self.usage(finish), **self.extra}

    def _chunk(self, delta: dict | str, finish_reason: str | None, tokens: list[TokenLogprob] | None = None) -> dict:
        logprobs = self._logprobs(tokens) if tokens else None
        if self.chat:
            choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
            return {**self._envelope("chat.completion.chunk"), "choices": [choice]}
        choice = {"index": 0, "text": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        return {**self._envelope("text_completion"), "choices": [choice]}

    async def sse(self, pieces: AsyncIterator[Any], include_usage: bool) -> AsyncIterator[str]:
        if self.chat:
            yield _event({**self._chunk({"role": "assistant", "content": ""}, None), **self.extra})
        tokens: list[TokenLogprob] = []  # logprobs of tokens whose text has not been sent yet
        try:
            async for piece in pieces:
                if isinstance(piece, Tokens):
                    tokens.extend(piece.entries)
                    continue
                if isinstance(piece, Finish):
                    if tokens:  # tokens whose text a stop string cut off
                        yield _event(self._chunk({"content": ""} if self.chat else "", None, tokens))
                    yield _event(self._chunk({} if self.chat else "", piece.reason))
                    if include_usage:
                        yield _event(
                            {
                                **self._envelope(self._chunk("", None)["object"]),
                                "choices": [],
                                "usage": self.usage(piece),
                            }
                        )
                else:
                    yield _event(self._chunk({"content": piece} if self.chat else piece, None, tokens))
                    tokens = []
        except LoracleError as exc:
            api = as_api_error(exc, "model")
            yield _event(error_body(public_message(api.message, self.root), api.type, api.code, api.param))
        except Exception as exc:  # the response has started: report the failure in the stream, then end it
            message = public_message(f"generation failed ({type(exc).__name__}: {exc})", self.root)
            yield _event(error_body(message, "server_error"))
        yield "data: [DONE]\n\n"


def _event(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _check_schema(state: ServerState, schema: dict) -> None:
    try:
        check_json_schema(state.lm, schema)
    except LoracleError as exc:
        raise ApiError(400, f"response_format: {exc}", param="response_format") from exc


def _checked(call: Callable[[], Any], param: str) -> Any:
    """Run `call`, turning loracle errors into the API error a client should see."""
    try:
        return call()
    except LoracleError as exc:
        raise as_api_error(exc, param) from exc
