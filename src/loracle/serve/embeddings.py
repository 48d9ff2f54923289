"""`/v1/embeddings`: the embedding model loracle's search ships (all-MiniLM-L6-v2, 384 dimensions, unit
length), in OpenAI's shape, so a client can build its own retrieval over the same vectors loracle uses."""

from __future__ import annotations

import base64
import threading
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from loracle.search.embedder import MINILM_NAME, default_embedder
from loracle.serve.body import RequestBody
from loracle.serve.errors import ApiError

router = APIRouter(prefix="/v1")
#: the embedding model's entry in /v1/models
EMBEDDING_MODEL = MINILM_NAME
_lock = threading.Lock()  # one encode at a time: the model is shared with the server's search


class EmbeddingRequest(RequestBody):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=300)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, le=8192)

    def texts(self) -> list[str]:
        if self.model != EMBEDDING_MODEL:
            message = f"{self.model[:100]}: no such embedding model (this server has {EMBEDDING_MODEL})"
            raise ApiError(404, message, code="model_not_found", param="model")
        if self.dimensions is not None and self.dimensions != default_embedder().dim:
            message = f"dimensions: {EMBEDDING_MODEL} gives {default_embedder().dim}, not {self.dimensions}"
            raise ApiError(400, message, param="dimensions")
        texts = [self.input] if isinstance(self.input, str) else self.input
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ApiError(400, "input: give a string or a list of strings (token ids are not taken)", param="input")
        if len(texts) > 256 or any(not t or len(t) > 32_000 for t in texts):
            raise ApiError(400, "input: 1 to 256 texts, each 1 to 32000 characters", param="input")
        return texts  # type: ignore[return-value]


def _embed(texts: list[str]) -> tuple[list[Any], int]:
    embedder = default_embedder()
    with _lock:
        vectors = embedder.encode(texts)
        tokens = embedder.count_tokens(texts)
    return list(vectors), tokens


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest) -> dict:
    """One vector per input text, as floats or base64 little-endian float32 (what the openai client asks for)."""
    texts = body.texts()
    vectors, tokens = await run_in_threadpool(_embed, texts)
    data = [
        {"object": "embedding", "index": index, "embedding": _encoded(vector, body.encoding_format)}
        for index, vector in enumerate(vectors)
    ]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": EMBEDDING_MODEL, "usage": usage}


def _encoded(vector: Any, encoding_format: str) -> list[float] | str:
    """A vector as floats, or as base64 of its little-endian float32 bytes."""
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.tolist()
