import json
from pathlib import Path

import pytest
import torch

from loracle.errors import ModelLoadError
from loracle.model import load_model
from loracle.model.cache import COMPLETE_MARKER, ConvertedModelCache
from loracle.model.loader import LoadedModel, model_fingerprint
from loracle.model.spec import check_model_spec


@pytest.fixture
def tiny_folder(tiny_lm: LoadedModel, tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-model"
    tiny_lm.model.save_pretrained(folder)
    tiny_lm.tokenizer.save_pretrained(folder)
    return folder


def test_loads_a_model_folder_with_the_same_fingerprint(tiny_lm: LoadedModel, tiny_folder: Path) -> None:
    lm = load_model(str(tiny_folder))
    assert lm.name == "tiny-model" and lm.fingerprint == tiny_lm.fingerprint
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert torch.allclose(lm.model(ids).logits, tiny_lm.model(ids).logits, atol=1e-6)


def test_fingerprint_tells_models_apart(tiny_lm: LoadedModel) -> None:
    from tests.conftest import build_tiny_model

    other = build_tiny_model(len(tiny_lm.tokenizer), seed=1)
    assert model_fingerprint(other) != tiny_lm.fingerprint


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing", "no such file or folder"),
        (lambda d: d / "missing.gguf", "no such file or folder"),
        (lambda d: _write(d / "notes.txt", b"hello"), "not a model"),
        (lambda d: _write(d / "random.gguf", bytes(range(256)) * 8), "not a GGUF file"),
        (lambda d: _write(d / "empty.gguf", b""), "not a GGUF file"),
        (lambda d: _mkdir(d / "folder"), "no config.json"),
    ],
)
def test_bad_model_specs_are_refused_in_one_line(tmp_path: Path, make, message: str) -> None:
    spec = str(make(tmp_path))
    with pytest.raises(ModelLoadError, match=message) as info:
        check_model_spec(spec)
    assert "\n" not in str(info.value) and spec in str(info.value)
    with pytest.raises(ModelLoadError, match=message):
        load_model(spec)


def test_a_folder_with_a_broken_config_is_refused(tmp_path: Path) -> None:
    folder = _mkdir(tmp_path / "broken")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError) as info:
        load_model(str(folder))
    assert str(folder) in str(info.value) and "\n" not in str(info.value)


def test_cache_entries_are_published_whole_and_checked_by_size(tmp_path: Path) -> None:
    cache = ConvertedModelCache(tmp_path)
    gguf = _write(tmp_path / "m.gguf", b"GGUF" + bytes(100))
    entry = cache.entry_for(gguf)
    assert entry == cache.entry_for(gguf)  # stable key (the second time from the stat memo)
    staging = cache.staging_dir()
    _write(staging / "model.safetensors", b"x" * 1000)
    cache.publish(staging, entry, gguf)
    assert cache.is_complete(entry) and cache.sizes_match(entry) and not staging.exists()
    assert json.loads((entry / COMPLETE_MARKER).read_text())["files"] == {"model.safetensors": 1000}
    _write(entry / "model.safetensors", b"x" * 10)  # truncated
    assert not cache.sizes_match(entry)
    (entry / "model.safetensors").unlink()
    assert not cache.sizes_match(entry)


def test_a_changed_gguf_gets_a_new_cache_entry(tmp_path: Path) -> None:
    cache = ConvertedModelCache(tmp_path)
    gguf = _write(tmp_path / "m.gguf", b"GGUF" + bytes(100))
    first = cache.entry_for(gguf)
    _write(gguf, b"GGUF" + bytes(99) + b"\x01")
    assert cache.entry_for(gguf) != first


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path
