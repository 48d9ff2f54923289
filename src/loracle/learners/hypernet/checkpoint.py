"""Hypernetwork checkpoints: weights (and, while training, optimizer state) as safetensors, the rest as JSON.

Training checkpoints hold everything needed to resume; the shipped checkpoint holds only the network's
weights in float16 (half the size; they are cast back to float32 on load). A checkpoint holds one of two
designs, named by its network config: the Perceiver that writes LoRA (`Hypernet`) or the memory-token
compressor that writes a prefix cache (`MemoryCompressor`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import torch

from loracle.errors import LoracleError
from loracle.learners.checkpoint import load_checkpoint, save_checkpoint
from loracle.learners.hypernet.network import Hypernet, NetworkConfig
from loracle.learners.hypernet.prefix import DESIGN as PREFIX_DESIGN
from loracle.learners.hypernet.prefix import MemoryCompressor, PrefixConfig

#: either design's network
Network = Hypernet | MemoryCompressor
N = TypeVar("N", Hypernet, MemoryCompressor)

LEARNER = "hypernet"
NET = "net."
OPT = "opt."
#: the torch RNG state of a training run, so a resumed run draws what a straight run would
RNG = "rng.torch"
#: the checkpoints shipped inside the package: one folder per base model name (the LoRA-writing design), and
#: one per base model name under a design's folder (memory/: the memory-token design)
SHIPPED_DIR = Path(__file__).parent / "checkpoints"


#: the folder of the memory-token design's shipped checkpoints (the memory learner's networks)
MEMORY_FOLDER = "memory"


def shipped_path(model_name: str, design_folder: str = "") -> Path:
    return SHIPPED_DIR / design_folder / model_name if design_folder else SHIPPED_DIR / model_name


def checkpoint_folder(path: Path, model_name: str) -> Path:
    """The checkpoint in `path` (a checkpoint, or a `loracle train-hypernet --out` folder holding one)."""
    if (path / "checkpoint" / "meta.json").is_file():
        path = path / "checkpoint"
    if not path.is_dir():
        raise LoracleError(
            f"{path}: no hypernetwork checkpoint for model {model_name} (train one: loracle train-hypernet)"
        )
    return path


def save_hypernet(
    path: Path,
    net: Network,
    fingerprint: str,
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    dtype: torch.dtype = torch.float32,
) -> None:
    tensors = {NET + k: v.detach().to(dtype) for k, v in net.state_dict().items()}
    record = {"hypernet": net.config.to_json(), **meta}
    if optimizer is not None:
        tensors[RNG] = torch.get_rng_state()
        state = optimizer.state_dict()
        for index, values in state["state"].items():
            for key, value in values.items():
                tensors[f"{OPT}{index}.{key}"] = torch.as_tensor(value).reshape(-1) if key == "step" else value
        record["param_groups"] = state["param_groups"]
    save_checkpoint(path, LEARNER, fingerprint, tensors, record)


def load_hypernet(path: Path, fingerprint: str) -> tuple[Network, dict[str, Any], dict[str, torch.Tensor]]:
    """The network (float32, eval mode; either design), the checkpoint's meta, and its training state (optimizer
    tensors and RNG state; empty for a shipped checkpoint)."""
    tensors, meta = load_checkpoint(path, LEARNER, fingerprint)
    config = meta["hypernet"]
    net: Network
    if config.get("design") == PREFIX_DESIGN:
        net = MemoryCompressor(PrefixConfig.from_json(config))
    else:
        net = Hypernet(NetworkConfig.from_json(config))
    weights = {k[len(NET) :]: v.to(torch.float32) for k, v in tensors.items() if k.startswith(NET)}
    net.load_state_dict(weights)
    net.eval()
    return net, meta, {k: v for k, v in tensors.items() if not k.startswith(NET)}


DESIGN_NAMES: dict[type, str] = {
    Hypernet: "a LoRA-writing hypernetwork",
    MemoryCompressor: "a memory-token (prefix) network",
}


def load_design(path: Path, model_name: str, fingerprint: str, design: type[N]) -> N:
    """The network of the checkpoint at `path` (or in the run folder `path`), refused by name unless it is of
    `design` (a Hypernet or a MemoryCompressor: each engine runs one)."""
    folder = checkpoint_folder(path, model_name)
    net, _meta, _ = load_hypernet(folder, fingerprint)
    if not isinstance(net, design):
        raise LoracleError(f"{folder}: {DESIGN_NAMES[type(net)]} checkpoint, not {DESIGN_NAMES[design]}")
    return net


def restore_training(optimizer: torch.optim.Optimizer, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Put the optimizer (and the torch RNG, if saved) back as they were when the checkpoint was written."""
    if RNG in tensors:
        torch.set_rng_state(tensors[RNG])
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in ((k, v) for k, v in tensors.items() if k.startswith(OPT)):
        index, name = key[len(OPT) :].split(".", 1)
        state.setdefault(int(index), {})[name] = value.reshape(()) if name == "step" else value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
