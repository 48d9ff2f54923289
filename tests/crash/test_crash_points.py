"""kill -9 at each commit point of ingest, compile, watch, adapters merge and learn --save, then rerun:
nothing lost, nothing half-written, status and lint clean (see tests/crash/scenarios.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.crash.runner import ForkedCli
from tests.crash.scenarios import SCENARIOS, Lab, make_tiny_model
from tests.e2e.writer import serve_writer

pytestmark = pytest.mark.crash


@pytest.fixture(scope="module")
def cli() -> ForkedCli:
    return ForkedCli()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with serve_writer() as url:
        yield url


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_crash_loses_nothing(name: str, cli: ForkedCli, endpoint: str, tiny_model: Path, tmp_path: Path) -> None:
    problems = SCENARIOS[name](Lab(cli, tmp_path, endpoint, tiny_model))
    assert not problems, "\n".join(problems)
