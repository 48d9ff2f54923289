"""Load a causal LM and its tokenizer from the embedded default, a local folder, a GGUF file or a hub id."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from loracle.errors import ModelLoadError
from loracle.model.cache import ConvertedModelCache
from loracle.model.embedded import EMBEDDED_NAME, EMBEDDED_SPEC, embedded_gguf_path
from loracle.model.spec import check_model_spec
from loracle.runtime import pick_device


@dataclass
class LoadedModel:
    """A base model ready to generate: the module, its tokenizer, and where it came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    source: str
    fingerprint: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def model_fingerprint(model: PreTrainedModel) -> str:
    """A short id of the base weights, the same however they were loaded (GGUF, cache, folder).

    Checkpoints and adapters record it so that one made for another base model is refused.
    """
    cfg = model.config
    digest = hashlib.sha256()
    for key in ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size"):
        digest.update(f"{key}={getattr(cfg, key, None)};".encode())
    embed = model.get_input_embeddings().weight.detach()
    digest.update(embed[:4].to(torch.float32).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def load_model(
    spec: str = EMBEDDED_SPEC, *, device: str | None = None, dtype: torch.dtype = torch.float32
) -> LoadedModel:
    """Load `spec`: "embedded", a local HF folder, a .gguf file, or a hub id (only where a hub is reachable)."""
    if spec == EMBEDDED_SPEC:
        model, tokenizer = _load_gguf(embedded_gguf_path(), dtype)
        name = EMBEDDED_NAME
    else:
        check_model_spec(spec)
        path = Path(spec).expanduser()
        if path.is_file():
            model, tokenizer = _load_gguf(path, dtype)
            name = path.stem
        elif path.is_dir():
            model, tokenizer = _load_pretrained(str(path), dtype, local_only=True)
            name = path.name
        else:
            model, tokenizer = _load_pretrained(spec, dtype, local_only=False)
            name = spec
    model.eval()
    model.to(pick_device(device))
    _ensure_pad_token(tokenizer)
    return LoadedModel(model, tokenizer, name, spec, model_fingerprint(model))


def _ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> None:
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token


def _load_pretrained(
    where: str, dtype: torch.dtype, *, local_only: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    try:
        with _quiet():
            tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=local_only)
            model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, local_files_only=local_only)
    except OSError as exc:
        raise ModelLoadError(f"{where}: cannot load model ({_first_line(exc)})") from exc
    except Exception as exc:  # safetensors, tokenizers and config parsing each raise their own error types
        raise ModelLoadError(f"{where}: not a loadable causal language model ({_first_line(exc)})") from exc
    return model, tokenizer


def _load_gguf(gguf: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a GGUF through the converted-model cache, converting (slow) only on a miss or a bad entry."""
    cache = ConvertedModelCache()
    entry = cache.entry_for(gguf)
    if cache.is_complete(entry) and cache.sizes_match(entry):
        try:
            return _load_pretrained(str(entry), dtype, local_only=True)
        except ModelLoadError:
            logging.getLogger(__name__).warning("converted-model cache entry %s is corrupt; rebuilding", entry)
    cache.discard(entry)
    model, tokenizer = _convert_gguf(gguf, dtype)
    staging = cache.staging_dir()
    try:
        # transformers refuses to save a GGUF-loaded model until its quantizer marker is cleared:
        # the weights are already dequantised, so the marker is stale.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        with _quiet():
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
        cache.publish(staging, entry, gguf)
    except OSError as exc:
        cache.discard(staging)
        logging.getLogger(__name__).warning("could not cache the converted model: %s", exc)
    return model, tokenizer


def _convert_gguf(gguf: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    try:
        with _quiet():
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
    except Exception as exc:  # gguf raises a variety of errors on files that are not GGUF models
        raise ModelLoadError(f"{gguf}: not a loadable GGUF model ({_first_line(exc)})") from exc
    return model, tokenizer


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


@contextlib.contextmanager
def _quiet():
    """Silence transformers' progress bars and chatter while loading; errors still raise."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars_were_on:
            # huggingface_hub warns (on stderr, breaking one-line errors) if its env switch forbids bars
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                hf_logging.enable_progress_bar()
