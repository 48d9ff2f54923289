"""`loracle export vllm`: the files vLLM reads, in the shape it reads them, and a launch script from the store."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from loracle.adapters.manifest import AdapterManifest
from loracle.adapters.store import LocalAdapterStore
from loracle.adapters.vllm_export import LAUNCH_SCRIPT, export_vllm
from loracle.errors import LoracleError
from loracle.model.loader import LoadedModel
from tests.conftest import build_tiny_model
from tests.unit.test_adapters import make_adapter


def _adapter(
    lm: LoadedModel, store: Path, adapter_id: str, seed: int, fingerprint: str = "", rank: int = 4, **config: object
) -> Path:
    folder = store / adapter_id
    if rank == 4:
        make_adapter(lm, folder, seed=seed, targets=("q_proj", "down_proj"))
    else:
        peft = get_peft_model(build_tiny_model(len(lm.tokenizer)), LoraConfig(r=rank, target_modules=["q_proj"]))
        peft.save_pretrained(folder)
    AdapterManifest(id=adapter_id, source="wiki", base_fingerprint=fingerprint or lm.fingerprint).write(folder)
    if config:
        path = folder / "adapter_config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return folder


def test_export_writes_what_vllm_reads_and_a_launch_script_sized_from_the_store(
    tiny_lm: LoadedModel, tmp_path: Path
) -> None:
    store = tmp_path / "adapters"
    _adapter(tiny_lm, store, "kestrel", seed=1)
    _adapter(tiny_lm, store, "corra", seed=2, rank=12)  # --max-lora-rank: the largest, rounded up to vLLM's 16
    _adapter(tiny_lm, store, "mislabelled", seed=5, r=8)  # its tensors have rank 4
    _adapter(tiny_lm, store, "dora", seed=3, use_dora=True)
    _adapter(tiny_lm, store, "elsewhere", seed=4, fingerprint="another-model")
    out = tmp_path / "export"
    result = export_vllm(tiny_lm, LocalAdapterStore(store), out, "smol")
    assert sorted(result.adapters) == ["corra", "kestrel"]
    assert sorted(result.skipped) == [
        "dora: DoRA (vLLM serves plain LoRA)",
        "elsewhere: compiled for another base model",
        "mislabelled: base_model.model.model.layers.0.mlp.down_proj.lora_A.weight has rank 4, its config says r=8",
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export")]  # no staging left behind
    base = AutoModelForCausalLM.from_pretrained(out / "base")
    assert (out / "base" / "model.safetensors").is_file() and (out / "base" / "tokenizer.json").is_file()
    modules = {name for name, _ in base.named_modules()}
    for adapter_id in result.adapters:
        folder = out / "adapters" / adapter_id
        config = json.loads((folder / "adapter_config.json").read_text())
        assert config["peft_type"] == "LORA" and config["bias"] == "none" and not config.get("use_dora")
        assert (folder / config["base_model_name_or_path"]).resolve() == (out / "base").resolve()
        assert {m.rsplit(".", 1)[-1] for m in config["target_modules"]} <= {"q_proj", "down_proj"}
        tensors = load_file(folder / "adapter_model.safetensors")
        for key, tensor in tensors.items():  # vLLM parses base_model.model.<module>.lora_A/B.weight
            prefix, module_and_kind = key.split(".", 2)[:2], key.split(".", 2)[2]
            module, kind = module_and_kind.rsplit(".", 2)[0], module_and_kind.rsplit(".", 2)[1]
            assert prefix == ["base_model", "model"] and module in modules and kind in ("lora_A", "lora_B")
            assert tensor.shape[0 if kind == "lora_A" else 1] == config["r"]
    # the exported pair gives what the adapter gave on the original model (PEFT as vLLM's reference)
    ids = torch.tensor([[5, 9, 17, 23]])
    original = PeftModel.from_pretrained(tiny_lm.model, store / "kestrel")
    exported = PeftModel.from_pretrained(base, out / "adapters" / "kestrel")
    assert torch.allclose(original(ids).logits, exported(ids).logits, atol=1e-5)

    script = (out / LAUNCH_SCRIPT).read_text()
    subprocess.run(["sh", "-n", str(out / LAUNCH_SCRIPT)], check=True)  # valid shell
    words = shlex.split(script.split("exec ", 1)[1].replace("\\\n", " "))
    assert words[:5] == ["vllm", "serve", "./base", "--served-model-name", "smol"] and "--enable-lora" in words
    assert words[words.index("--max-lora-rank") + 1] == "16"
    assert words[words.index("--max-cpu-loras") + 1] == "2" and words[words.index("--max-loras") + 1] == "2"
    modules_given = words[words.index("--lora-modules") + 1 : words.index("$@")]
    assert sorted(modules_given) == ["corra=./adapters/corra", "kestrel=./adapters/kestrel"]
    assert json.loads((out / "export.json").read_text())["max_lora_rank"] == 16
    with pytest.raises(LoracleError, match="already exists"):
        export_vllm(tiny_lm, LocalAdapterStore(store), out)
