"""The base model: load it, prompt it, generate from it, apply adapters to it."""

from loracle.model.adapters import apply_adapters, check_adapter_fits
from loracle.model.chat import Message, encode_chat, question_messages
from loracle.model.embedded import EMBEDDED_SPEC, embedded_gguf_path
from loracle.model.generate import GenerationConfig, generate_chat, stream_chat, stream_ids
from loracle.model.loader import LoadedModel, load_model, model_fingerprint

__all__ = [
    "EMBEDDED_SPEC",
    "GenerationConfig",
    "LoadedModel",
    "Message",
    "apply_adapters",
    "check_adapter_fits",
    "embedded_gguf_path",
    "encode_chat",
    "generate_chat",
    "load_model",
    "model_fingerprint",
    "question_messages",
    "stream_chat",
    "stream_ids",
]
