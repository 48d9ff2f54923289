"""Careless and hostile input to the CLI: bad option values and usage, an adapter store with copied, corrupt or
foreign adapters, merges and exports aimed at the wrong place, unreadable and huge sources. Each gets one clear
line (or typer's usage line and exit 2), never a traceback, and nothing is overwritten.

Runs are real processes forked from a preloaded server (tests/crash/runner.py), on the tiny model."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.crash.runner import ForkedCli, Result, run
from tests.crash.scenarios import SOURCES, TTT, Lab

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def compiled_kb(
    forked_cli: ForkedCli, writer_endpoint: str, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A knowledge base with the sources ingested and its wiki compiled (copied by each test that changes it)."""
    lab = Lab(forked_cli, tmp_path_factory.mktemp("compiled"), writer_endpoint, tiny_model_dir)
    kb = lab.kb("kb", tuple(SOURCES))
    done = lab.run("compile", "--kb", kb, *TTT)
    assert done.returncode == 0, done.output
    return kb


@pytest.fixture
def kb(compiled_kb: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(compiled_kb, tmp_path / "kb", symlinks=True))


def one_line_error(done: Result) -> str:
    assert "Traceback" not in done.output, done.output
    lines = [line for line in done.output.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), done.output
    return lines[0]


def usage_error(done: Result) -> str:
    assert done.returncode == 2 and "Traceback" not in done.output, done.output
    assert done.output.startswith("Usage: loracle ") and "Try 'loracle " in done.output, done.output
    return done.output.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "option",
    [
        ["--threads", "-1"],
        ["--threads", "100000"],
        ["--max-tokens", "0"],
        ["--temperature", "nan"],
        ["--temperature", "-1"],
        ["--temperature", "inf"],
    ],
)
def test_bad_option_values_are_usage_errors(forked_cli: ForkedCli, tiny_model_dir: Path, option: list[str]) -> None:
    done = run(forked_cli, "ask", "What is the capital of France?", "--model", tiny_model_dir, *option)
    assert f"Invalid value for '{option[0]}'" in usage_error(done)


def test_usage_errors_exit_2_with_a_usage_line_and_there_is_a_version(forked_cli: ForkedCli) -> None:
    assert "Missing argument" in usage_error(run(forked_cli, "ask"))
    assert "No such option: --bogus" in usage_error(run(forked_cli, "status", "--bogus"))
    assert "No such command" in usage_error(run(forked_cli, "frobnicate"))
    done = run(forked_cli, "--version")
    assert done.returncode == 0 and done.output.strip() == "loracle 0.1.0"


def test_merge_refuses_to_overwrite_one_of_its_inputs(forked_cli: ForkedCli, kb: Path) -> None:
    folder = kb / "adapters" / "entities-corra-river"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    done = run(forked_cli, "adapters", "merge", "entities-corra-river", "sources-varn-station-summary",
               "--out", "entities-corra-river", "--kb", kb)  # fmt: skip
    assert "--out entities-corra-river: is one of the adapters being merged" in one_line_error(done)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_export_into_a_folder_writes_id_gguf_there(forked_cli: ForkedCli, kb: Path, tmp_path: Path) -> None:
    out = tmp_path / "exports"
    out.mkdir()
    done = run(forked_cli, "adapters", "export", "entities-corra-river", "--out", out, "--kb", kb)
    assert done.returncode == 0, done.output
    assert (out / "entities-corra-river.gguf").stat().st_size > 0


def test_export_keeps_an_existing_file_unless_forced(forked_cli: ForkedCli, kb: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine.gguf"
    out.write_bytes(b"a file the user keeps")
    done = run(forked_cli, "adapters", "export", "entities-corra-river", "--out", out, "--kb", kb)
    assert f"{out}: already exists; pass --force to replace it" in one_line_error(done)
    assert out.read_bytes() == b"a file the user keeps"
    done = run(forked_cli, "adapters", "export", "entities-corra-river", "--out", out, "--force", "--kb", kb)
    assert done.returncode == 0, done.output
    assert out.read_bytes().startswith(b"GGUF")


def test_adapters_list_measures_and_flags_instead_of_trusting_manifests(forked_cli: ForkedCli, kb: Path) -> None:
    adapters = kb / "adapters"
    shutil.copytree(adapters / "entities-corra-river", adapters / "copy-of-corra")  # its manifest says corra
    manifest = adapters / "entities-corra-river" / "manifest.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"size_bytes": 10**12}))
    (adapters / "sources-varn-station-summary" / "adapter_model.safetensors").write_bytes(b"\x00garbage")
    done = run(forked_cli, "adapters", "list", "--json", "--kb", kb)
    assert done.returncode == 0, done.output
    rows = {row["id"]: row for row in json.loads(done.output)}
    assert "copy-of-corra" in rows and "entities-corra-river" in rows  # two adapters, not one id twice
    on_disk = sum(p.stat().st_size for p in (adapters / "entities-corra-river").iterdir())
    assert rows["entities-corra-river"]["size_bytes"] == on_disk  # not the manifest's 10**12
    assert "unreadable weights" in rows["sources-varn-station-summary"]["problem"]
    assert rows["copy-of-corra"]["problem"] == ""
    assert "unreadable weights" in run(forked_cli, "adapters", "list", "--kb", kb).output  # the table says so too


def test_a_peft_folder_declaring_another_base_is_refused_by_name(
    forked_cli: ForkedCli, kb: Path, tiny_model_dir: Path
) -> None:
    folder = kb / "adapters" / "entities-corra-river"
    (folder / "manifest.json").unlink()  # a plain PEFT folder: no fingerprint recorded
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps(config | {"base_model_name_or_path": "org/Other-1B"}))
    done = run(forked_cli, "ask", "Where?", "--adapter", folder, "--model", tiny_model_dir, "--max-tokens", "2")
    assert "made for org/Other-1B (base_model_name_or_path in adapter_config.json), not" in one_line_error(done)


def test_status_shows_an_unreadable_raw_file_as_unreadable_not_new(forked_cli: ForkedCli, kb: Path) -> None:
    (kb / "raw" / "scan.md").write_bytes(b"\x89PNG\x00\x00binary")
    status = json.loads(run(forked_cli, "status", "--json", "--kb", kb).output)
    assert status["new_sources"] == [] and status["stale"] is False
    assert [line for line in status["unreadable"] if "scan.md: binary file" in line]


def test_a_huge_source_is_refused_by_name_before_any_model_work(forked_cli: ForkedCli, kb: Path) -> None:
    """19 MB of text (built here, never committed): `compile --from raw` once held 2.8 GB and printed nothing
    for 90 s; now the file is refused in one line naming it, its size and the limit."""
    (kb / "raw" / "huge.md").write_bytes(b"# Huge\n\n" + b"The Corra River flows past the station. " * 480_000)
    started = time.perf_counter()
    done = run(forked_cli, "compile", "--from", "raw", "--kb", kb, *TTT)
    seconds = time.perf_counter() - started
    assert "Traceback" not in done.output and done.returncode == 0, done.output  # the other sources compiled
    [line] = [line for line in done.output.splitlines() if "huge.md" in line]
    assert "too large to compile (19,200,008 bytes" in line
    assert "the limit is 32,768, [compile] max_document_tokens in loracle.toml" in line
    assert seconds < 60, f"{seconds:.0f} s to refuse it"


def test_compile_exits_1_when_every_document_fails(forked_cli: ForkedCli, kb: Path) -> None:
    config = (kb / "loracle.toml").read_text()
    (kb / "loracle.toml").write_text(config + "\n[compile]\nmax_document_tokens = 5\n")
    done = run(forked_cli, "compile", "--from", "raw", "--kb", kb, *TTT)
    assert done.returncode == 1 and done.output.count("too large to compile") == len(SOURCES), done.output


def test_file_names_that_look_like_markup_are_printed_as_they_are(forked_cli: ForkedCli, kb: Path) -> None:
    """Rich reads [brackets] as markup: a path holding "[/x]" (folder "a[", file "x].md") made printing fail."""
    (kb / "raw" / "a[").mkdir()
    (kb / "raw" / "a[" / "x].md").write_bytes(b"\x00binary")
    done = run(forked_cli, "status", "--kb", kb)
    assert done.returncode == 0 and "Traceback" not in done.output, done.output
    assert "a[/x].md: binary file, not text" in done.output
    done = run(forked_cli, "ingest", kb / "raw" / "a[" / "x].md", "--kb", kb)
    assert "a[/x].md: binary file, not text" in done.output and "Traceback" not in done.output
