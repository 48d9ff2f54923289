from pathlib import Path

import pytest

from loracle.config import load_config
from loracle.errors import LoracleError


def test_defaults_without_file(tmp_path: Path) -> None:
    assert load_config(tmp_path).model.base == "embedded"
    assert load_config(None).serve.host == "127.0.0.1"


def test_reads_values_and_rejects_bad_toml(tmp_path: Path) -> None:
    (tmp_path / "loracle.toml").write_text('[model]\nbase = "/models/x"\nthreads = 1\n')
    assert load_config(tmp_path).model.threads == 1
    (tmp_path / "loracle.toml").write_text("[model\n")
    with pytest.raises(LoracleError, match="not valid TOML"):
        load_config(tmp_path)
    (tmp_path / "loracle.toml").write_text('[model]\nthreads = "many"\n')
    with pytest.raises(LoracleError, match=r"model.threads"):
        load_config(tmp_path)


def test_the_engine_is_torch_unless_set_and_only_a_known_one(tmp_path: Path) -> None:
    assert load_config(tmp_path).model.engine == "torch"
    (tmp_path / "loracle.toml").write_text('[model]\nengine = "openvino"\n')
    assert load_config(tmp_path).model.engine == "openvino"
    (tmp_path / "loracle.toml").write_text('[model]\nengine = "fast"\n')
    with pytest.raises(LoracleError, match=r"loracle.toml: model.engine: Input should be 'torch' or 'openvino'"):
        load_config(tmp_path)
