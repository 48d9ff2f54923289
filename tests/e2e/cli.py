"""The real `loracle` CLI in a subprocess, as the end-to-end tests run it: wide terminal, no LORACLE_KB from
the caller's environment (each test says which knowledge base it means)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def loracle(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from loracle.cli import main; main()", *map(str, args)]
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("LORACLE_KB", None)
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)
