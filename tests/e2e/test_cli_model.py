"""The model commands end to end through the installed `loracle` script: ask, chat, doctor, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model

from tests.conftest import build_tiny_model, build_tiny_tokenizer

pytestmark = pytest.mark.e2e

LORACLE = str(Path(sys.executable).parent / "loracle")
TELESCOPE = "What is the name of the main telescope at the Kestrel Valley Observatory?"


def loracle(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([LORACLE, *args], input=stdin, capture_output=True, text=True, timeout=300, env=env)


def one_error_line(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    """The command failed with exactly one line on stderr, no traceback, naming `expected`."""
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_ask_streams_an_answer() -> None:
    done = loracle("ask", "What is the capital of France?", "--max-tokens", "16")
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout


def test_ask_with_a_document_in_context(sample_dir: Path) -> None:
    doc = sample_dir / "kestrel-valley-observatory.md"
    done = loracle("ask", TELESCOPE, "--doc", str(doc), "--max-tokens", "24")
    assert done.returncode == 0, done.stderr
    assert "Harrow" in done.stdout


def test_chat_driven_through_stdin(sample_dir: Path) -> None:
    doc = sample_dir / "kestrel-valley-observatory.md"
    done = loracle("chat", stdin=f"/doc {doc}\n{TELESCOPE}\n/reset\n/quit\n")
    assert done.returncode == 0, done.stderr
    assert "will be in context" in done.stdout
    assert "Harrow" in done.stdout
    assert "history cleared" in done.stdout


def test_doctor_shows_torch_and_the_cache() -> None:
    done = loracle("doctor")
    assert done.returncode == 0, done.stderr
    assert torch.__version__ in done.stdout
    assert "cache" in done.stdout and "threads" in done.stdout


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BAD_INPUTS = {
    "missing model": (lambda d: ["-m", str(d / "no-such-model")], "no such file or folder"),
    "text file as model": (lambda d: ["-m", str(_write(d / "notes.txt", b"hello"))], "not a model"),
    "random bytes .gguf": (lambda d: ["-m", str(_write(d / "r.gguf", os.urandom(4096)))], "not a GGUF file"),
    "missing doc": (lambda d: ["--doc", str(d / "missing.md")], "no such file"),
    "binary doc": (lambda d: ["--doc", str(_write(d / "bin.md", b"abc\x00\x01\x02" * 50))], "binary"),
    "invalid UTF-8 doc": (
        lambda d: ["--doc", str(_write(d / "latin.md", "caf\xe9 cr\xe8me".encode("latin-1")))],
        "UTF-8",
    ),
    "folder that is not an adapter": (lambda d: ["--adapter", str(d)], "not a PEFT adapter"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_in_one_line_before_loading_the_model(tmp_path: Path, case: str) -> None:
    make, message = BAD_INPUTS[case]
    args = make(tmp_path)
    done = loracle("ask", "Who?", *args)
    one_error_line(done, message, args[-1])


def _tiny_adapter(folder: Path) -> Path:
    """A real PEFT adapter, but for a tiny 2-layer model with other shapes than the embedded one."""
    tokenizer = build_tiny_tokenizer()
    peft_model = get_peft_model(build_tiny_model(len(tokenizer)), LoraConfig(r=4, target_modules=["down_proj"]))
    peft_model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("manifest", "message"), [(None, "base model has"), ("0" * 16, "made for another base model")])
def test_adapter_for_another_base_model_is_refused(tmp_path: Path, manifest: str | None, message: str) -> None:
    folder = _tiny_adapter(tmp_path / "adapter")
    if manifest:
        (folder / "manifest.json").write_text(json.dumps({"base_fingerprint": manifest}))
    done = loracle("ask", "Who?", "--adapter", str(folder))
    one_error_line(done, message, str(folder))


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    done = loracle("--debug", "ask", "Who?", "--doc", str(tmp_path / "missing.md"))
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "no such file" in done.stderr
