"""The base model: load it, prompt it, generate from it, apply adapters to it.

Names are imported on first use (PEP 562), so light submodules (spec, adapter_files, embedded, cache) can be
imported without paying for torch and transformers; `from loracle.model import load_model` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "apply_adapters": "adapters",
    "check_adapter_fits": "adapters",
    "Message": "chat",
    "encode_chat": "chat",
    "question_messages": "chat",
    "EMBEDDED_SPEC": "embedded",
    "embedded_gguf_path": "embedded",
    "GenerationConfig": "generate",
    "generate_chat": "generate",
    "stream_chat": "generate",
    "stream_ids": "generate",
    "LoadedModel": "loader",
    "load_model": "loader",
    "model_fingerprint": "loader",
}

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

if TYPE_CHECKING:
    from loracle.model.adapters import apply_adapters, check_adapter_fits
    from loracle.model.chat import Message, encode_chat, question_messages
    from loracle.model.embedded import EMBEDDED_SPEC, embedded_gguf_path
    from loracle.model.generate import GenerationConfig, generate_chat, stream_chat, stream_ids
    from loracle.model.loader import LoadedModel, load_model, model_fingerprint


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'loracle.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"loracle.model.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
