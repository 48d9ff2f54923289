"""Cheap checks of a model spec before the slow imports and load: a missing path or a file that isn't a model.

Kept free of torch and transformers so the CLI can refuse bad input in a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path

from loracle.errors import ModelLoadError
from loracle.model.embedded import EMBEDDED_SPEC

GGUF_MAGIC = b"GGUF"


def looks_like_path(spec: str) -> bool:
    """A spec that names a local file or folder rather than a hub id ("owner/name")."""
    return spec.startswith((".", "/", "~")) or spec.endswith(".gguf") or spec.count("/") != 1


def check_model_spec(spec: str) -> None:
    """Refuse, with one line, a spec that cannot be a model: no such path, not a GGUF, a folder without config."""
    if spec == EMBEDDED_SPEC:
        return
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(f"{path}: not a model (expected a .gguf file or a model folder)")
        try:
            with path.open("rb") as handle:
                magic = handle.read(len(GGUF_MAGIC))
        except OSError as exc:
            raise ModelLoadError(f"{path}: unreadable ({exc.strerror})") from exc
        if magic != GGUF_MAGIC:
            raise ModelLoadError(f"{path}: not a GGUF file (it does not start with the GGUF signature)")
    elif path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path}: not a model folder (no config.json)")
    elif looks_like_path(spec):
        raise ModelLoadError(f"{spec}: no such file or folder")
