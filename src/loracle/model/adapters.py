"""Apply one or several PEFT LoRA adapters to a loaded base model, after checking they fit it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import safe_open

from loracle.errors import AdapterError
from loracle.model.adapter_files import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    MANIFEST,
    read_adapter_config,
    recorded_base_fingerprint,
)
from loracle.model.loader import LoadedModel

#: a GGUF file's quantisation tag at the end of its name (.Q4_1, -q4_k_m, .f16, ...)
_QUANT_TAG = re.compile(r"[.-](?:i?q\d\w*|f16|f32|bf16)$")

if TYPE_CHECKING:
    from peft import PeftModel

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "MANIFEST",
    "apply_adapters",
    "check_adapter_fits",
    "check_base_model",
    "read_adapter_config",
]


def check_adapter_fits(lm: LoadedModel, folder: Path) -> None:
    """Refuse an adapter made for another base model: by recorded fingerprint (loracle's manifest), else by the
    base model adapter_config.json names, then by tensor shapes."""
    check_base_model(lm, folder, read_adapter_config(folder))
    modules = dict(lm.model.named_modules())
    try:
        with safe_open(str(folder / ADAPTER_WEIGHTS), framework="pt") as weights:
            for key in weights.keys():  # noqa: SIM118 - safe_open has no __iter__
                _check_tensor(folder, key, weights.get_slice(key).get_shape(), modules)
    except AdapterError:
        raise
    except Exception as exc:  # safetensors raises its own error types on corrupt files
        raise AdapterError(f"{folder / ADAPTER_WEIGHTS}: unreadable ({exc})") from exc


def check_base_model(lm: LoadedModel, folder: Path, config: dict) -> None:
    """Refuse an adapter (of any kind) made for another base model: by the fingerprint loracle's manifest records,
    else by the base model its PEFT `config` names."""
    recorded = recorded_base_fingerprint(folder)
    if recorded and recorded != lm.fingerprint:
        raise AdapterError(
            f"{folder}: made for another base model (fingerprint {recorded}, loaded model is {lm.fingerprint})"
        )
    declared = str(config.get("base_model_name_or_path") or "")
    if not recorded and declared and model_key(declared) not in {model_key(lm.name), model_key(lm.source)}:
        raise AdapterError(
            f"{folder}: made for {declared} (base_model_name_or_path in {ADAPTER_CONFIG}), not {lm.name}"
        )


def model_key(name: str) -> str:
    """A model's name without its folder, hub owner, .gguf suffix and quantisation tag, lowercased:
    "HuggingFaceTB/SmolLM2-135M-Instruct" and "SmolLM2-135M-Instruct.Q4_1.gguf" are the same model."""
    base = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower().removesuffix(".gguf")
    return _QUANT_TAG.sub("", base)


def _check_tensor(folder: Path, key: str, shape: Sequence[int], modules: dict) -> None:
    """lora_A is [r, in_features] and lora_B is [out_features, r] of the module they adapt."""
    if ".lora_A." not in key and ".lora_B." not in key:
        return
    module_path = key.split(".lora_")[0]
    for prefix in ("base_model.model.", ""):
        name = module_path[len(prefix) :] if module_path.startswith(prefix) else None
        if name is not None and name in modules:
            target = modules[name]
            break
    else:
        raise AdapterError(f"{folder}: adapter targets {module_path}, which this base model does not have")
    in_f, out_f = getattr(target, "in_features", None), getattr(target, "out_features", None)
    if ".lora_A." in key and in_f is not None and shape[-1] != in_f:
        raise AdapterError(f"{folder}: {module_path} expects input width {shape[-1]}, base model has {in_f}")
    if ".lora_B." in key and out_f is not None and shape[0] != out_f:
        raise AdapterError(f"{folder}: {module_path} outputs width {shape[0]}, base model has {out_f}")


def apply_adapters(
    lm: LoadedModel,
    folders: Sequence[Path],
    weights: Sequence[float] | None = None,
    *,
    merge: bool = False,
) -> LoadedModel:
    """Return `lm` with the adapters active together, each scaled by its weight.

    merge=True folds them into the base weights: no per-token cost, but they can't be removed again
    (right for a one-shot `loracle ask`; the server keeps them unmerged to swap per request). With the
    OpenVINO engine selected they stay unmerged: it applies them at run time to the weights it traced.
    """
    if not folders:
        return lm
    from loracle.model.engine import selected_engine

    merge = merge and selected_engine() == "torch"
    weights = list(weights) if weights is not None else [1.0] * len(folders)
    if len(weights) != len(folders):
        raise AdapterError(f"{len(weights)} adapter weights given for {len(folders)} adapters")
    for folder in folders:
        check_adapter_fits(lm, Path(folder))
    from peft import PeftModel  # imported here: peft costs ~3 s at start-up and most commands never need it

    names = [f"a{i}" for i in range(len(folders))]
    try:
        peft_model = PeftModel.from_pretrained(lm.model, str(folders[0]), adapter_name=names[0])
        for name, folder in zip(names[1:], folders[1:], strict=True):
            peft_model.load_adapter(str(folder), adapter_name=name)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise AdapterError(f"{folders[0]}: PEFT could not load the adapter ({str(exc).splitlines()[0][:200]})") from exc
    peft_model.base_model.set_adapter(names)
    scale_adapters(peft_model, dict(zip(names, weights, strict=True)))
    peft_model.eval()
    model = peft_model.merge_and_unload() if merge else peft_model
    return LoadedModel(model, lm.tokenizer, lm.name, lm.source, lm.fingerprint)


def scale_adapters(peft_model: PeftModel, weights: dict[str, float]) -> None:
    """Multiply each named adapter's LoRA scaling by its weight, in every adapted layer."""
    for module in peft_model.modules():
        scaling = getattr(module, "scaling", None)
        if isinstance(scaling, dict):
            for name, weight in weights.items():
                if name in scaling:
                    scaling[name] = scaling[name] * weight
