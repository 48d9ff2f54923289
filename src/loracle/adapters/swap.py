"""Swap adapters on a loaded model fast: a slot that PEFT wraps once, then new weights are copied into.

Wrapping a model with PEFT injects LoRA layers into every target module (~0.3 s on the embedded model).
Adapters compiled by one learner usually share rank and target modules, so the next one is switched in by
copying its tensors into the existing LoRA parameters and setting its scaling (~10-20 ms), after checking
that its keys and shapes are exactly the slot's. An adapter of another shape re-wraps the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open

from loracle.errors import AdapterError
from loracle.model.adapters import ADAPTER_WEIGHTS, MANIFEST, check_adapter_fits, read_adapter_config
from loracle.model.loader import LoadedModel

if TYPE_CHECKING:
    from peft import PeftModel

SLOT = "slot"


class AdapterSlot:
    """The base model with at most one adapter active, switched by `load(folder)`."""

    def __init__(self, lm: LoadedModel) -> None:
        self.base = lm
        self.current: Path | None = None
        self._peft: PeftModel | None = None
        self._params: dict[str, torch.nn.Parameter] = {}
        self._scaled: list[dict[str, float]] = []

    def load(self, folder: Path) -> LoadedModel:
        """The model with `folder`'s adapter active (checked against the base model first)."""
        folder = Path(folder)
        config = read_adapter_config(folder)
        scaling = float(config.get("lora_alpha", config["r"])) / float(config["r"])
        if not (self._peft is not None and self._copy_in(folder, scaling)):
            check_adapter_fits(self.base, folder)
            self._wrap(folder)
        self.current = folder
        return LoadedModel(self._peft, self.base.tokenizer, self.base.name, self.base.source, self.base.fingerprint)

    def _wrap(self, folder: Path) -> None:
        self.clear()
        from peft import PeftModel

        try:
            self._peft = PeftModel.from_pretrained(self.base.model, str(folder), adapter_name=SLOT)
        except (ValueError, RuntimeError, KeyError) as exc:
            raise AdapterError(f"{folder}: PEFT could not load the adapter ({str(exc).splitlines()[0][:200]})") from exc
        self._peft.eval()
        marker = f".{SLOT}."
        self._params = {
            name.replace(marker, "."): param for name, param in self._peft.named_parameters() if marker in name
        }
        self._scaled = [
            module.scaling
            for module in self._peft.modules()
            if isinstance(getattr(module, "scaling", None), dict) and SLOT in module.scaling
        ]

    def _copy_in(self, folder: Path, scaling: float) -> bool:
        """Copy the adapter into the slot's parameters; False if its keys or shapes differ from the slot's."""
        self._check_fingerprint(folder)
        try:
            with safe_open(str(folder / ADAPTER_WEIGHTS), framework="pt") as weights:
                keys = set(weights.keys())
                if keys != set(self._params):
                    return False
                if any(weights.get_slice(k).get_shape() != list(self._params[k].shape) for k in keys):
                    return False
                with torch.no_grad():
                    for key in keys:
                        self._params[key].copy_(weights.get_tensor(key))
        except AdapterError:
            raise
        except Exception as exc:  # safetensors raises its own error types on corrupt files
            raise AdapterError(f"{folder / ADAPTER_WEIGHTS}: unreadable ({exc})") from exc
        for scales in self._scaled:
            scales[SLOT] = scaling
        return True

    def _check_fingerprint(self, folder: Path) -> None:
        try:
            recorded = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("base_fingerprint")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if recorded and recorded != self.base.fingerprint:
            raise AdapterError(f"{folder}: made for another base model (fingerprint {recorded})")

    def clear(self) -> LoadedModel:
        """Remove the adapter layers again: the plain base model."""
        if self._peft is not None:
            self._peft.unload()
        self._peft, self._params, self._scaled, self.current = None, {}, [], None
        return self.base
