"""The local adapter store: atomic publish, hidden staging folders, manifests, ids, and the store Protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from loracle.adapters.manifest import AdapterManifest
from loracle.adapters.peft_format import peft_key, write_lora_adapter
from loracle.adapters.store import AdapterStore, LocalAdapterStore, check_adapter_id
from loracle.errors import AdapterError
from loracle.model import apply_adapters
from loracle.model.loader import LoadedModel

#: module -> (out_features, in_features) in the tiny test model
TINY_MODULES = {"mlp.down_proj": (32, 64), "self_attn.q_proj": (32, 32), "self_attn.k_proj": (16, 32)}


def make_adapter(
    folder: Path, lm: LoadedModel, seed: int, r: int = 2, alpha: float | None = None, adapter_id: str | None = None
) -> dict[str, torch.Tensor]:
    """A small random adapter for the tiny model's two layers, written as a real PEFT folder."""
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(2):
        for module, (out_f, in_f) in TINY_MODULES.items():
            path = f"model.layers.{layer}.{module}"
            tensors[peft_key(path, "A")] = torch.randn(r, in_f, generator=gen) * 0.1
            tensors[peft_key(path, "B")] = torch.randn(out_f, r, generator=gen) * 0.1
    manifest = AdapterManifest(
        id=adapter_id or folder.name, learner="test", base_model=lm.name, base_fingerprint=lm.fingerprint
    )
    write_lora_adapter(
        folder,
        tensors,
        r=r,
        alpha=alpha if alpha is not None else float(r),
        target_modules=[m.rsplit(".", 1)[-1] for m in TINY_MODULES],
        base_model=lm.name,
        manifest=manifest.model_dump(exclude={"created", "size_bytes"}),
    )
    return tensors


def test_local_store_is_an_adapter_store(tmp_path: Path) -> None:
    assert isinstance(LocalAdapterStore(tmp_path), AdapterStore)


def test_put_publishes_a_built_folder_and_replaces_the_old_one(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    store = LocalAdapterStore(tmp_path / "adapters")
    first = store.staging_folder("notes")
    make_adapter(first, tiny_lm, seed=1)
    store.put("notes", first)
    assert store.ids() == ["notes"]
    assert store.get("notes").base_fingerprint == tiny_lm.fingerprint
    config = json.loads((store.path("notes") / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny"

    second = tmp_path / "elsewhere" / "built"
    make_adapter(second, tiny_lm, seed=2, adapter_id="other-name")
    manifest = store.put("notes", second)
    assert manifest.id == "notes"
    assert store.get("notes").id == "notes"
    assert [p.name for p in (tmp_path / "adapters").iterdir()] == ["notes"]
    apply_adapters(tiny_lm, [store.path("notes")])


def test_hidden_folders_are_not_adapters_and_cleanup_removes_them(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    store = LocalAdapterStore(tmp_path)
    make_adapter(tmp_path / ".notes.staging-abc", tiny_lm, seed=1)
    make_adapter(tmp_path / "kept", tiny_lm, seed=1)
    assert [m.id for m in store.list()] == ["kept"]
    store.cleanup()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]


def test_put_refuses_an_incomplete_folder(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    store = LocalAdapterStore(tmp_path / "adapters")
    built = tmp_path / "built"
    make_adapter(built, tiny_lm, seed=1)
    (built / "manifest.json").unlink()
    with pytest.raises(AdapterError, match=r"no manifest\.json"):
        store.put("notes", built)
    assert store.ids() == []


def test_remove_and_missing_ids(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    store = LocalAdapterStore(tmp_path)
    make_adapter(tmp_path / "gone", tiny_lm, seed=1)
    store.remove("gone")
    assert store.ids() == [] and list(tmp_path.iterdir()) == []
    with pytest.raises(AdapterError, match="no such adapter"):
        store.get("gone")


@pytest.mark.parametrize("bad", ["../etc", "a/b", "..", "", "UPPER", ".hidden"])
def test_unsafe_ids_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(AdapterError, match="not a valid adapter id"):
        check_adapter_id(bad)
    with pytest.raises(AdapterError):
        LocalAdapterStore(tmp_path).path(bad)


def test_manifest_keeps_learner_extras_and_rejects_bad_json(tmp_path: Path) -> None:
    manifest = AdapterManifest(id="x", learner="ttt", timings={"compile": 1.5}, steps=12)
    manifest.write(tmp_path)
    back = AdapterManifest.read(tmp_path)
    assert back.timings == {"compile": 1.5} and back.model_extra == {"steps": 12}
    (tmp_path / "manifest.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(AdapterError, match="not valid JSON"):
        AdapterManifest.read(tmp_path)


def test_adapter_slot_hot_swaps_to_the_same_output_as_a_fresh_load(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    from loracle.adapters.swap import AdapterSlot

    make_adapter(tmp_path / "a", tiny_lm, seed=1, r=2, alpha=2.0)
    make_adapter(tmp_path / "b", tiny_lm, seed=2, r=2, alpha=6.0)
    make_adapter(tmp_path / "wide", tiny_lm, seed=3, r=4)
    ids = torch.tensor([[1, 5, 9, 14]])
    with torch.no_grad():
        base = tiny_lm.model(ids).logits
        expected = {}
        for name in ("b", "wide"):
            fresh = apply_adapters(tiny_lm, [tmp_path / name])
            expected[name] = fresh.model(ids).logits
            fresh.model.unload()
        slot = AdapterSlot(tiny_lm)
        slot.load(tmp_path / "a")
        for name in ("b", "wide", "b"):  # hot-swap, then another rank (re-wrap), then back
            got = slot.load(tmp_path / name).model(ids).logits
            torch.testing.assert_close(got, expected[name])
        torch.testing.assert_close(slot.clear().model(ids).logits, base)


def test_adapter_slot_refuses_another_base_model(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    from loracle.adapters.swap import AdapterSlot

    make_adapter(tmp_path / "a", tiny_lm, seed=1)
    make_adapter(tmp_path / "b", tiny_lm, seed=2)
    manifest = AdapterManifest.read(tmp_path / "b").updated(base_fingerprint="someone-else")
    manifest.write(tmp_path / "b")
    slot = AdapterSlot(tiny_lm)
    slot.load(tmp_path / "a")
    with pytest.raises(AdapterError, match="another base model"):
        slot.load(tmp_path / "b")
    assert slot.current == tmp_path / "a"
