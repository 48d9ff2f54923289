"""kill -9 at each commit point of ingest, compile, watch, adapters merge and learn --save, then rerun:
nothing lost, nothing half-written, status and lint clean (see tests/crash/scenarios.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.crash.runner import ForkedCli
from tests.crash.scenarios import SCENARIOS, Lab

pytestmark = pytest.mark.crash


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_crash_loses_nothing(
    name: str, forked_cli: ForkedCli, writer_endpoint: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    problems = SCENARIOS[name](Lab(forked_cli, tmp_path, writer_endpoint, tiny_model_dir))
    assert not problems, "\n".join(problems)
