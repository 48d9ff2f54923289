"""Merge several adapters into one, through PEFT's `add_weighted_adapter`.

Methods (PEFT's combination types underneath):
- linear: the weighted sum of the adapters' weight deltas, refactored to a rank that holds it exactly
  (PEFT "svd" with the rank set to the sum of ranks). PEFT's own "linear" mixes the A and B factors
  separately, which adds cross terms, so it is not used.
- ties: TIES-merging of the deltas (trim to `density`, elect signs, disjoint mean), refactored by SVD
  (PEFT "ties_svd").
- cat: rank concatenation (PEFT "cat"): exact, and the merged rank is the sum of the ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from loracle.adapters.manifest import AdapterManifest
from loracle.adapters.peft_format import write_lora_adapter
from loracle.errors import AdapterError
from loracle.model.adapters import check_adapter_fits, read_adapter_config
from loracle.model.loader import LoadedModel

MergeMethod = Literal["linear", "ties", "cat"]
MERGE_METHODS: tuple[str, ...] = ("linear", "ties", "cat")
_PEFT_COMBINATION = {"linear": "svd", "ties": "ties_svd", "cat": "cat"}


def merge_adapters(
    lm: LoadedModel,
    folders: Sequence[Path],
    out_folder: Path,
    *,
    weights: Sequence[float] | None = None,
    method: str = "linear",
    density: float = 0.5,
    rank: int | None = None,
    adapter_id: str | None = None,
) -> AdapterManifest:
    """Write the merge of `folders` to `out_folder` (atomically) and return its manifest.

    `lm.model` is wrapped by PEFT for the merge and unwrapped again afterwards.
    """
    if method not in MERGE_METHODS:
        raise AdapterError(f"unknown merge method {method!r} (known: {', '.join(MERGE_METHODS)})")
    if len(folders) < 2:
        raise AdapterError("merge needs at least two adapters")
    weights = list(weights) if weights is not None else [1.0] * len(folders)
    if len(weights) != len(folders):
        raise AdapterError(f"{len(weights)} weights given for {len(folders)} adapters")
    for folder in folders:
        check_adapter_fits(lm, Path(folder))
    ranks = [int(read_adapter_config(Path(folder))["r"]) for folder in folders]
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict

    names = [f"m{i}" for i in range(len(folders))]
    peft_model = PeftModel.from_pretrained(lm.model, str(folders[0]), adapter_name=names[0])
    try:
        for name, folder in zip(names[1:], folders[1:], strict=True):
            peft_model.load_adapter(str(folder), adapter_name=name)
        options: dict = {"combination_type": _PEFT_COMBINATION[method]}
        if method != "cat":
            options["svd_rank"] = rank or sum(ranks)
        if method == "ties":
            options["density"] = density
        try:
            peft_model.add_weighted_adapter(names, list(weights), "merged", **options)
        except ValueError as exc:
            raise AdapterError(f"PEFT could not merge these adapters ({str(exc).splitlines()[0][:200]})") from exc
        config = peft_model.peft_config["merged"]
        state = get_peft_model_state_dict(peft_model, adapter_name="merged", save_embedding_layers=False)
        tensors = {_peft_saved_key(key): value.detach().clone() for key, value in state.items()}
    finally:
        peft_model.unload()
    manifests = [AdapterManifest.read(Path(folder)) for folder in folders]
    merged_id = adapter_id or out_folder.name
    manifest = AdapterManifest(
        id=merged_id,
        title=f"{method} merge of {', '.join(m.id for m in manifests)}",
        source="merge",
        inputs=[m.id for m in manifests],
        learner=f"merge:{method}",
        base_model=manifests[0].base_model or lm.name,
        base_fingerprint=lm.fingerprint,
        merge={"method": method, "weights": list(weights), "density": density if method == "ties" else None},
    )
    size = write_lora_adapter(
        out_folder,
        tensors,
        r=int(config.r),
        alpha=float(config.lora_alpha),
        target_modules=sorted(_target_modules(tensors)),
        base_model=manifest.base_model,
        manifest=manifest.model_dump(exclude={"created", "size_bytes"}),
    )
    return manifest.updated(size_bytes=size)


def _peft_saved_key(key: str) -> str:
    """PEFT's state dict keys may carry the adapter name (…lora_A.merged.weight); saved files do not."""
    return key.replace(".merged.weight", ".weight")


def _target_modules(tensors: dict[str, torch.Tensor]) -> set[str]:
    return {key.split(".lora_")[0].rsplit(".", 1)[-1] for key in tensors}
