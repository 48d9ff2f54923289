"""Run the `loracle` CLI in a process of its own that can be killed hard (SIGKILL) at a named point.

Two ways, one interface (`start` -> `Run`):
- `ForkedCli`: each run is a real process forked from a server that imported loracle, torch and PEFT once,
  so a run costs about half a second instead of ~8 s of imports (what the crash tests use);
- `ProcessCli`: each run is the installed `loracle` executable (what the robustness benchmark uses).
Either way `crash_at` sets LORACLE_CRASH_AT (see loracle.crash) for that run only.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from loracle.crash import CRASH_ENV

#: heavy imports, done once; not loracle.cli, whose consoles must be made in each run (they read COLUMNS when made)
PRELOAD = ["torch", "transformers", "peft", "loracle.knowledge_base", "loracle.learners", "loracle.wiki"]
#: what every run gets: a wide terminal, one torch thread (the machine is shared), no knowledge base by default
RUN_ENV = {"COLUMNS": "200", "LORACLE_THREADS": "1"}


@dataclass
class Result:
    returncode: int  # -9: killed by SIGKILL
    output: str  # stdout and stderr together

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


class Run(Protocol):
    def output(self) -> str: ...

    def interrupt(self) -> None: ...

    def wait(self, timeout: float = 120.0) -> Result: ...


class Cli(Protocol):
    def start(self, *args: str | Path, crash_at: str | None = None, cwd: Path | None = None) -> Run: ...


def run(cli: Cli, *args: str | Path, crash_at: str | None = None, timeout: float = 120.0) -> Result:
    """Run a command to its end (or its crash)."""
    return cli.start(*args, crash_at=crash_at).wait(timeout)


def wait_for(run: Run, text: str, timeout: float = 60.0) -> None:
    """Wait until the run has printed `text` (e.g. a watcher saying it is watching)."""
    deadline = time.monotonic() + timeout
    while text not in run.output():
        if time.monotonic() > deadline:
            raise TimeoutError(f"never printed {text!r}; printed:\n{run.output()}")
        time.sleep(0.05)


def _env(crash_at: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LORACLE_KB", CRASH_ENV)}
    env.update(RUN_ENV)
    if crash_at:
        env[CRASH_ENV] = crash_at
    return env


class _FileOutput:
    """A run's stdout and stderr, sent to one temporary file so they can be read while it runs."""

    def __init__(self) -> None:
        handle, name = tempfile.mkstemp(prefix="loracle-run-", suffix=".txt")
        os.close(handle)
        self.path = Path(name)

    def read(self) -> str:
        return self.path.read_bytes().decode("utf-8", "replace")

    def close(self) -> str:
        text = self.read()
        self.path.unlink(missing_ok=True)
        return text


def _forked_main(argv: list[str], env: dict[str, str], cwd: str | None, out: str) -> None:
    """The child: output to `out`, the run's environment, then the CLI's own entry point."""
    fd = os.open(out, os.O_WRONLY | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.clear()
    os.environ.update(env)
    if cwd:
        os.chdir(cwd)
    sys.argv = ["loracle", *argv]
    from loracle.cli import main

    main()


class _ForkedRun:
    def __init__(self, process: multiprocessing.process.BaseProcess, out: _FileOutput) -> None:
        self.process, self.out = process, out

    def output(self) -> str:
        return self.out.read()

    def interrupt(self) -> None:
        if self.process.pid is not None:
            os.kill(self.process.pid, signal.SIGINT)

    def wait(self, timeout: float = 120.0) -> Result:
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()
            raise TimeoutError(f"still running after {timeout} s:\n{self.out.close()}")
        return Result(int(self.process.exitcode), self.out.close())


class ForkedCli:
    """Runs forked from a server that preloaded loracle (see the module docstring)."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(PRELOAD)

    def start(self, *args: str | Path, crash_at: str | None = None, cwd: Path | None = None) -> Run:
        out = _FileOutput()
        argv = [str(a) for a in args]
        cwd_text = str(cwd) if cwd else None
        process = self.context.Process(target=_forked_main, args=(argv, _env(crash_at), cwd_text, str(out.path)))
        process.start()
        return _ForkedRun(process, out)


class _ProcessRun:
    def __init__(self, process: subprocess.Popen, out: _FileOutput) -> None:
        self.process, self.out = process, out

    def output(self) -> str:
        return self.out.read()

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)

    def wait(self, timeout: float = 120.0) -> Result:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise TimeoutError(f"still running after {timeout} s:\n{self.out.close()}") from None
        return Result(code, self.out.close())


class ProcessCli:
    """Runs of the installed `loracle` executable beside this Python."""

    executable = str(Path(sys.executable).parent / "loracle")

    def start(self, *args: str | Path, crash_at: str | None = None, cwd: Path | None = None) -> Run:
        out = _FileOutput()
        with out.path.open("wb") as sink:
            process = subprocess.Popen(
                [self.executable, *map(str, args)], stdout=sink, stderr=subprocess.STDOUT, env=_env(crash_at), cwd=cwd
            )
        return _ProcessRun(process, out)
