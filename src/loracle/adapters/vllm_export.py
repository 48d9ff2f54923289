"""Export a knowledge base for vLLM: the base model as a Hugging Face folder, each adapter as a PEFT folder,
and a launch script (`vllm serve ./base --enable-lora --lora-modules id=./adapters/id ...`) whose LoRA limits
come from the store.

Only adapters vLLM can load are exported (rank at most 512 and as the tensors have it, no DoRA, no
per-module ranks, no bias, no modules_to_save); the others, and those compiled for another base model,
are listed with the reason. The export is built beside OUT and renamed into place, so OUT is either
absent or complete.
"""

from __future__ import annotations

import json
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import safe_open

from loracle.adapters.store import LocalAdapterStore
from loracle.errors import LoracleError
from loracle.model.adapter_files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, read_adapter_config
from loracle.model.loader import LoadedModel

#: the values vLLM accepts for --max-lora-rank
VLLM_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
#: LoRA slots vLLM keeps on the accelerator at once (--max-loras); every adapter stays in CPU memory
MAX_GPU_LORAS = 8
LAUNCH_SCRIPT = "serve-vllm.sh"


@dataclass
class VllmExport:
    folder: Path
    adapters: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "id: why" for each adapter left out
    max_rank: int = 0


def vllm_problem(config: dict) -> str:
    """Why vLLM would refuse this PEFT config ("" when it would load it)."""
    if config.get("peft_type", "LORA") != "LORA":
        return f"a {config.get('peft_type')} adapter, not LoRA"
    rank = int(config.get("r") or 0)
    if not 0 < rank <= VLLM_RANKS[-1]:
        return f"rank {rank} (vLLM takes 1 to {VLLM_RANKS[-1]})"
    if config.get("use_dora"):
        return "DoRA (vLLM serves plain LoRA)"
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        return "per-module ranks or alphas (vLLM reads one r and lora_alpha)"
    if config.get("bias", "none") != "none":
        return f"bias {config.get('bias')!r} (vLLM needs 'none')"
    if config.get("modules_to_save"):
        return "modules_to_save (vLLM loads LoRA weights only)"
    return ""


def export_vllm(lm: LoadedModel, store: LocalAdapterStore, out: Path, served_name: str = "") -> VllmExport:
    """Write `out` (which must not exist): base/, adapters/<id>/, serve-vllm.sh and export.json."""
    out = out.expanduser()
    if out.exists():
        raise LoracleError(f"{out}: already exists; export into a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        result = _write(lm, store, staging, served_name or _served_name(lm))
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.folder = out
    return result


def _served_name(lm: LoadedModel) -> str:
    return Path(lm.name).name or "base"


def _write(lm: LoadedModel, store: LocalAdapterStore, root: Path, served_name: str) -> VllmExport:
    result = VllmExport(root)
    base = root / "base"
    lm.model.save_pretrained(base, safe_serialization=True)
    lm.tokenizer.save_pretrained(base)
    for manifest, problem in store.inspect():
        folder = store.root / manifest.id
        if not problem and manifest.base_fingerprint and manifest.base_fingerprint != lm.fingerprint:
            problem = "compiled for another base model"
        config = {}
        if not problem:
            try:
                config = read_adapter_config(folder)
            except LoracleError as exc:
                problem = str(exc)
        problem = problem or vllm_problem(config) or _rank_problem(folder, int(config["r"]))
        if problem:
            result.skipped.append(f"{manifest.id}: {problem}")
            continue
        target = root / "adapters" / manifest.id
        target.mkdir(parents=True)
        shutil.copyfile(folder / ADAPTER_WEIGHTS, target / ADAPTER_WEIGHTS)
        config["base_model_name_or_path"] = "../../base"  # the exported base, relative to this folder
        (target / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")
        result.adapters.append(manifest.id)
        result.max_rank = max(result.max_rank, int(config["r"]))
    script = launch_script(served_name, result.adapters, result.max_rank)
    (root / LAUNCH_SCRIPT).write_text(script, encoding="utf-8")
    (root / LAUNCH_SCRIPT).chmod(0o755)
    summary = {"served_model_name": served_name, "adapters": result.adapters, "skipped": result.skipped}
    (root / "export.json").write_text(json.dumps({**summary, "max_lora_rank": _vllm_rank(result.max_rank)}, indent=2))
    return result


def _rank_problem(folder: Path, rank: int) -> str:
    """Whether every LoRA tensor has the rank the config states (vLLM sizes its buffers by `r`)."""
    with safe_open(folder / ADAPTER_WEIGHTS, framework="pt") as weights:
        for key in weights.keys():  # noqa: SIM118 - safe_open has no __iter__
            shape = weights.get_slice(key).get_shape()
            if (".lora_A." in key and shape[0] != rank) or (".lora_B." in key and shape[-1] != rank):
                return f"{key} has rank {shape[0] if '.lora_A.' in key else shape[-1]}, its config says r={rank}"
    return ""


def _vllm_rank(rank: int) -> int:
    """The smallest --max-lora-rank vLLM accepts that holds `rank`."""
    return next(r for r in VLLM_RANKS if r >= rank)


def launch_script(served_name: str, adapters: list[str], max_rank: int) -> str:
    """A POSIX shell script that serves the export with vLLM from its own folder (extra arguments pass through)."""
    groups = [["vllm", "serve", "./base"], ["--served-model-name", served_name]]
    if adapters:
        groups += [["--enable-lora"], ["--max-lora-rank", str(_vllm_rank(max_rank))]]
        groups += [["--max-loras", str(min(len(adapters), MAX_GPU_LORAS))], ["--max-cpu-loras", str(len(adapters))]]
        modules = [f"{a}=./adapters/{a}" for a in adapters]
        groups += [["--lora-modules", modules[0]], *([m] for m in modules[1:])]
    lines = " \\\n  ".join(" ".join(shlex.quote(word) for word in group) for group in groups)
    return (
        "#!/bin/sh\n"
        "# Serve this loracle export with vLLM (pip install vllm): an OpenAI-compatible API on port 8000 where\n"
        "# model=<adapter id> answers with that adapter. Extra arguments go to vllm serve (e.g. --port 8001).\n"
        'cd "$(dirname "$0")" || exit 1\n'
        f'exec {lines} \\\n  "$@"\n'
    )
