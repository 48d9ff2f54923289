"""The writer LLM: the local model or an OpenAI-compatible endpoint, with JSON extraction and repair."""

from loracle.llm.backends import Backend, Completion, EndpointBackend, LocalBackend
from loracle.llm.client import LLM, JSONRequest, Usage, make_llm, parse_answer
from loracle.llm.jsonfix import extract_json, fit_to_schema

__all__ = [
    "LLM",
    "Backend",
    "Completion",
    "EndpointBackend",
    "JSONRequest",
    "LocalBackend",
    "Usage",
    "extract_json",
    "fit_to_schema",
    "make_llm",
    "parse_answer",
]
