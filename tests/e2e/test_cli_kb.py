"""`loracle ask --kb` and `chat --kb` as a user runs them: the installed script on a tiny compiled knowledge
base (tests/compiled_kb.py) whose loracle.toml names the tiny model saved as a folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from loracle.model import GenerationConfig, generate_chat, question_messages
from loracle.model.prefix import load_prefix_adapter
from tests.compiled_kb import CORRA, KESTREL, save_seeded_model, seeded_lm, write_compiled_kb, write_memory_kb
from tests.crash.runner import ForkedCli, run
from tests.e2e.test_cli_model import loracle

pytestmark = pytest.mark.e2e
FOUNDER = "Who founded the Kestrel Valley Observatory?"
ELSEWHERE = "What is the capital of France?"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_seeded_model(tmp_path_factory.mktemp("tiny-seeded"))


def test_ask_kb_streams_the_routed_answer_then_names_its_document(tmp_path: Path, model_dir: Path) -> None:
    kb = write_compiled_kb(tmp_path / "kb", seeded_lm(), model=str(model_dir))
    page = kb / "wiki" / f"{CORRA.id}.md"
    page.write_text(page.read_text() + "It was rebuilt in 2001.\n", encoding="utf-8")  # its adapter is now stale
    done = loracle("ask", "--kb", str(kb), "What powers the Varn station?", "--max-tokens", "8", "--threads", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "from: Corra River (corra-river)"
    warnings = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "warning: adapter corra-river is stale: wiki/corra-river.md changed" in warnings[0]


def test_chat_kb_routes_every_turn(tmp_path: Path, model_dir: Path) -> None:
    kb = write_compiled_kb(tmp_path / "kb", seeded_lm(), model=str(model_dir))
    done = loracle("chat", "--kb", str(kb), "--threads", "1", stdin=f"{FOUNDER}\n{ELSEWHERE}\n/doc x.md\n/quit\n")
    assert done.returncode == 0, done.stderr
    sources = [line for line in done.stdout.splitlines() if line.startswith("from: ")]
    assert sources == [f"from: {KESTREL.title} ({KESTREL.id})", "from: the base model (no adapter matched)"]
    assert "/doc is not available with --kb" in done.stdout


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def test_ask_kb_refuses_bad_knowledge_bases_in_one_line(forked_cli: ForkedCli, tmp_path: Path, model_dir: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "loracle.toml").write_text(f'[model]\nbase = "{model_dir}"\n')
    done = run(forked_cli, "ask", "--kb", empty, FOUNDER)
    assert done.returncode == 1
    assert "no compiled adapters" in one_line(done.output) and "run `loracle compile --kb" in done.output
    # compiled for another model than the one the knowledge base now names
    foreign = write_compiled_kb(tmp_path / "foreign", seeded_lm(seed=7), pages=(KESTREL,), model=str(model_dir))
    done = run(forked_cli, "ask", "--kb", foreign, FOUNDER)
    assert done.returncode == 1
    line = one_line(done.output)
    assert f"adapters/{KESTREL.id}: made for another base model" in line and "compile" in line
    done = run(forked_cli, "ask", "--kb", foreign, FOUNDER, "--doc", tmp_path / "notes.md")
    assert done.returncode == 1 and "leave out --doc and --adapter" in one_line(done.output)


def test_ask_with_a_prefix_adapter_places_it_before_the_question(tmp_path: Path, model_dir: Path) -> None:
    lm = seeded_lm()
    folder = write_memory_kb(tmp_path / "kb", lm).adapter_path(KESTREL.id)
    expected = generate_chat(lm, question_messages(FOUNDER), GenerationConfig(6), load_prefix_adapter(lm, folder))
    assert expected != generate_chat(lm, question_messages(FOUNDER), GenerationConfig(6))
    model = ("-m", str(model_dir), "--threads", "1")
    done = loracle("ask", FOUNDER, "--adapter", str(folder), *model, "--max-tokens", "6")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected.strip()
    weighted = loracle("ask", FOUNDER, "--adapter", str(folder), "--adapter-weights", "0.5", *model)
    assert weighted.returncode == 1 and "is a prefix adapter, which takes no weight" in weighted.stderr
