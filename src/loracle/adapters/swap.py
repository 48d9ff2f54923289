"""Swap adapters on a loaded model fast: a slot that PEFT wraps once, then hot-swaps weights into.

Wrapping a model with PEFT injects LoRA layers into every target module (~0.3 s on the embedded model);
copying another adapter's weights into those layers (PEFT's hotswap) takes tens of milliseconds. Adapters
compiled by one learner share rank and target modules, so switching between them is the fast path; an
adapter of another shape re-wraps the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from loracle.errors import AdapterError
from loracle.model.adapters import check_adapter_fits, read_adapter_config
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
        self._shape: tuple | None = None

    def load(self, folder: Path, *, check: bool = True) -> LoadedModel:
        """The model with `folder`'s adapter active (check=False skips the fit check for trusted folders)."""
        folder = Path(folder)
        config = read_adapter_config(folder)
        if check:
            check_adapter_fits(self.base, folder)
        shape = (int(config.get("r", 0)), tuple(sorted(config.get("target_modules") or [])))
        try:
            if self._peft is not None and shape == self._shape:
                from peft.utils.hotswap import hotswap_adapter

                hotswap_adapter(self._peft, str(folder), adapter_name=SLOT, torch_device=str(self.base.device))
            else:
                self.clear()
                from peft import PeftModel

                self._peft = PeftModel.from_pretrained(self.base.model, str(folder), adapter_name=SLOT)
                self._peft.eval()
                self._shape = shape
        except (ValueError, RuntimeError, KeyError) as exc:
            self.clear()
            raise AdapterError(f"{folder}: PEFT could not load the adapter ({str(exc).splitlines()[0][:200]})") from exc
        self.current = folder
        return LoadedModel(self._peft, self.base.tokenizer, self.base.name, self.base.source, self.base.fingerprint)

    def clear(self) -> LoadedModel:
        """Remove the adapter layers again: the plain base model."""
        if self._peft is not None:
            self._peft.unload()
        self._peft, self._shape, self.current = None, None, None
        return self.base
