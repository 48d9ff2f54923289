"""The files of a PEFT LoRA adapter folder, checked without loading any model (no torch import).

The CLI checks adapters with this before the ~5 s model load, so a bad folder fails at once.
"""

from __future__ import annotations

import json
from pathlib import Path

from loracle.errors import AdapterError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
MANIFEST = "manifest.json"


def read_adapter_config(folder: Path, peft_type: str = "LORA") -> dict:
    """The adapter's PEFT config, or a one-line error saying why the folder isn't an adapter (of `peft_type`)."""
    if not folder.is_dir():
        raise AdapterError(f"{folder}: no such adapter folder")
    config_path = folder / ADAPTER_CONFIG
    if not config_path.is_file():
        raise AdapterError(f"{folder}: not a PEFT adapter (no {ADAPTER_CONFIG})")
    if not (folder / ADAPTER_WEIGHTS).is_file():
        raise AdapterError(f"{folder}: not a PEFT adapter (no {ADAPTER_WEIGHTS})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{config_path}: not valid JSON ({exc})") from exc
    found = config.get("peft_type", "LORA") if isinstance(config, dict) else None
    if found != peft_type:
        kind = "LoRA" if peft_type == "LORA" else peft_type.lower().replace("_", "-")
        hint = " (a prefix adapter: this takes LoRA adapters only)" if found == "PREFIX_TUNING" else ""
        raise AdapterError(f"{config_path}: not a {kind} adapter config{hint}")
    return config


def recorded_base_fingerprint(folder: Path) -> str | None:
    """The base model fingerprint the adapter's manifest records, if it has one."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return None
    try:
        recorded = json.loads(manifest_path.read_text(encoding="utf-8")).get("base_fingerprint")
    except (ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise AdapterError(f"{manifest_path}: not valid JSON ({exc})") from exc
    return str(recorded) if recorded else None
