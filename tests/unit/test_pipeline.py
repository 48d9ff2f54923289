"""Compile orchestration with a compiler test double on the tiny model: incremental, deletions, failures,
ids, aggregation, batching, the lock, kill -9 safety, and watching."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from loracle.adapters.compiler import BatchDocumentCompiler, CompileReport, DocumentCompiler
from loracle.adapters.lock import LockTimeout
from loracle.adapters.manifest import AdapterManifest
from loracle.adapters.peft_format import peft_key, write_lora_adapter
from loracle.adapters.store import LocalAdapterStore, check_adapter_folder
from loracle.compile_limit import count_tokens_with, tokens_up_to
from loracle.documents import Document
from loracle.knowledge_base import KnowledgeBase
from loracle.learners import learner_config
from loracle.model import apply_adapters
from loracle.model.loader import LoadedModel
from loracle.pipeline import Compilation, CompileEvent, Watch, wiki_source
from loracle.sources.folder import FolderSource

REPO = Path(__file__).resolve().parents[2]


class RecordingCompiler:
    """Test double: writes a real (random, seeded by the text) PEFT adapter for the tiny model and records
    what it compiled. A document containing EXPLODE makes it raise; `slow_s` sleeps mid-write."""

    name = "double"
    config = None

    def __init__(self, lm: LoadedModel, slow_s: float = 0.0) -> None:
        self.lm = lm
        self.slow_s = slow_s
        self.calls: list[str] = []
        self.texts: dict[str, str] = {}

    def compile_document(self, doc: Document, folder: Path) -> CompileReport:
        if "EXPLODE" in doc.text:
            raise ValueError("the learner choked")
        self.calls.append(doc.id)
        self.texts[doc.id] = doc.text
        gen = torch.Generator().manual_seed(int(doc.hash[:8], 16))
        path = "model.layers.0.mlp.down_proj"
        tensors = {peft_key(path, "A"): torch.randn(2, 64, generator=gen), peft_key(path, "B"): torch.randn(32, 2)}
        if self.slow_s:
            (folder / "adapter_model.safetensors").write_bytes(b"partial")
            time.sleep(self.slow_s)
        write_lora_adapter(
            folder,
            tensors,
            r=2,
            alpha=2.0,
            target_modules=["down_proj"],
            base_model=self.lm.name,
            manifest={"id": doc.id, "base_fingerprint": self.lm.fingerprint},
        )
        return CompileReport(doc.id, seconds=0.01, tokens=len(doc.text.split()))


class BatchRecordingCompiler(RecordingCompiler):
    name = "double-batch"

    def __init__(self, lm: LoadedModel) -> None:
        super().__init__(lm)
        self.batches: list[int] = []

    def compile_documents(self, docs: Sequence[Document], folders: Sequence[Path]) -> list[CompileReport]:
        self.batches.append(len(docs))
        return [self.compile_document(d, f) for d, f in zip(docs, folders, strict=True)]


def make_kb(root: Path, pages: dict[str, str | bytes]) -> Path:
    (root / "wiki").mkdir(parents=True, exist_ok=True)
    (root / "loracle.toml").write_text("", encoding="utf-8")
    for name, body in pages.items():
        path = root / "wiki" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8"))
    return root


def compilation(kb: Path, compiler: DocumentCompiler, **options) -> Compilation:
    lm = compiler.lm  # type: ignore[attr-defined]
    return Compilation(
        wiki_source(kb),
        compiler,
        LocalAdapterStore(kb / "adapters"),
        kb / ".loracle" / "compile.lock",
        base_model=lm.name,
        base_fingerprint=lm.fingerprint,
        **options,
    )


def test_doubles_satisfy_the_protocols(tiny_lm: LoadedModel) -> None:
    assert isinstance(RecordingCompiler(tiny_lm), DocumentCompiler)
    assert not isinstance(RecordingCompiler(tiny_lm), BatchDocumentCompiler)
    assert isinstance(BatchRecordingCompiler(tiny_lm), BatchDocumentCompiler)


def test_incremental_compile_and_deletion(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    kb = make_kb(tmp_path, {"alpha.md": "# Alpha\nOne.", "beta.md": "Two.", "index.md": "[[alpha]]"})
    compiler = RecordingCompiler(tiny_lm)
    first = compilation(kb, compiler).run()
    assert sorted(first.compiled) == ["alpha", "beta"] and not first.failed  # index.md is bookkeeping
    second = compilation(kb, compiler).run()
    assert second.compiled == [] and sorted(second.unchanged) == ["alpha", "beta"]

    (kb / "wiki" / "beta.md").write_text("Two, changed.", encoding="utf-8")
    (kb / "wiki" / "alpha.md").unlink()
    third = compilation(kb, compiler).run()
    assert third.compiled == ["beta"] and third.removed == ["alpha"]
    assert LocalAdapterStore(kb / "adapters").ids() == ["beta"]
    assert compiler.calls == ["alpha", "beta", "beta"]


def test_manifest_records_where_the_adapter_came_from(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    kb = make_kb(tmp_path, {"alpha.md": "---\ntitle: The Alpha\n---\nOne fact."})
    compilation(kb, RecordingCompiler(tiny_lm)).run()
    folder = kb / "adapters" / "alpha"
    manifest = check_adapter_folder(folder)
    assert manifest.document_id == "alpha" and manifest.title == "The Alpha"
    assert manifest.content_hash == Document.from_text("One fact.", "x").hash
    assert (manifest.learner, manifest.source, manifest.inputs) == ("double", "wiki", ["alpha"])
    assert manifest.base_fingerprint == tiny_lm.fingerprint and manifest.base_model == "tiny"
    assert manifest.size_bytes > 0 and manifest.timings["compile"] >= 0 and manifest.created
    apply_adapters(tiny_lm, [folder])


def test_another_learner_or_source_does_not_count_as_up_to_date(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    kb = make_kb(tmp_path, {"alpha.md": "One."})
    compilation(kb, RecordingCompiler(tiny_lm)).run()
    batch = BatchRecordingCompiler(tiny_lm)
    assert compilation(kb, batch).run().compiled == ["alpha"]
    raw = Compilation(FolderSource("raw", kb / "raw"), batch, LocalAdapterStore(kb / "adapters"), kb / ".loracle" / "l")
    (kb / "raw").mkdir()
    assert raw.run().removed == []  # a raw compile never removes wiki adapters


def test_failing_documents_are_reported_by_name_and_skipped(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    kb = make_kb(
        tmp_path,
        {
            "good.md": "Fine.",
            "empty.md": "   \n",
            "latin1.md": "caf\xe9".encode("latin-1"),
            "binary.txt": b"\x00\x01\x02",
            "broken.md": "---\ntitle: [unclosed\n---\nbody",
            "bomb.md": "EXPLODE here",
        },
    )
    summary = compilation(kb, RecordingCompiler(tiny_lm)).run()
    assert summary.compiled == ["good"]
    failed = {f.name: f.message for f in summary.failed}
    assert set(failed) == {"empty.md", "latin1.md", "binary.txt", "broken.md", "bomb.md"}
    assert "UTF-8" in failed["latin1.md"] and "the learner choked" in failed["bomb.md"]
    assert all(name in message for name, message in failed.items())
    assert LocalAdapterStore(kb / "adapters").ids() == ["good"]
    assert not [p for p in (kb / "adapters").iterdir() if p.name.startswith(".")]


def test_progress_counts_the_documents_compiled_with_each_ones_time(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    pages = {"a.md": "Alpha.", "b.md": "Beta.", "bomb.md": "EXPLODE", "latin1.md": "caf\xe9".encode("latin-1")}
    kb = make_kb(tmp_path, pages)
    events: list[CompileEvent] = []
    compilation(kb, RecordingCompiler(tiny_lm), progress=events.append).run()
    finished = [(e.event, e.name, e.done, e.total) for e in events if e.event != "compiling"]
    # the unreadable page fails before compiling: not one of the three to compile
    assert finished == [("compiled", "a", 1, 3), ("compiled", "b", 2, 3), ("failed", "bomb", 3, 3)]
    assert [e.name for e in events if e.event == "compiling"] == ["a", "b", "bomb"]
    assert all(e.seconds is not None and e.seconds >= 0 for e in events if e.event != "compiling")


def test_a_document_over_the_token_limit_is_refused_before_the_learner_sees_it(
    tmp_path: Path, tiny_lm: LoadedModel
) -> None:
    kb = make_kb(tmp_path, {"short.md": "Ilse Marrow founded it.", "long.md": "Ilse Marrow founded it. " * 400})
    (kb / "loracle.toml").write_text("[compile]\nmax_document_tokens = 300\n", encoding="utf-8")
    compiler = RecordingCompiler(tiny_lm)
    summary = KnowledgeBase(kb, compiler=compiler, lm=tiny_lm).compile_all()
    assert summary.compiled == ["short"] and compiler.calls == ["short"]
    [failure] = summary.failed
    assert failure.name == "long.md" and "long.md: too large to compile (9,600 bytes, about" in failure.message
    assert "the limit is 300, [compile] max_document_tokens in loracle.toml" in failure.message


def test_counting_tokens_of_a_huge_text_stops_soon_after_the_limit(tiny_lm: LoadedModel) -> None:
    counted: list[int] = []

    def count(text: str) -> int:
        counted.append(len(text))
        return count_tokens_with(tiny_lm.tokenizer)(text)

    text = "The Corra River flows past the station. " * 100_000  # 4 MB
    tokens, over = tokens_up_to(text, 1000, count)
    exact = count_tokens_with(tiny_lm.tokenizer)(text[:40_000]) * 100
    assert over and 0.8 < tokens / exact < 1.2
    assert sum(counted) < 20_000  # characters tokenized, of 4,000,000
    assert tokens_up_to("Ilse Marrow founded it.", 1000, count) == (count("Ilse Marrow founded it."), False)


def test_only_documents_count_as_changed_files(tmp_path: Path) -> None:
    source = wiki_source(tmp_path)
    wiki = tmp_path / "wiki"
    assert source.doc_id(wiki / "Notes" / "A b.md") == "notes-a-b"
    assert source.doc_id(wiki / "index.md") is None
    for ignored in ("page.md.swp", "page.md~", "4913", ".page.md.tmp", ".obsidian/app.json"):
        assert source.doc_id(wiki / ignored) is None, ignored
    assert source.doc_id(tmp_path / "raw" / "x.md") is None


def test_adapter_ids_are_sanitised(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    kb = make_kb(tmp_path, {"Notes/A  B (draft).md": "x", "CON.md": "y", "日本 語.md": "z"})
    summary = compilation(kb, RecordingCompiler(tiny_lm)).run()
    assert sorted(summary.compiled) == ["con-doc", "notes-a-b-draft", "日本-語"]

    class EvilSource(FolderSource):
        def read_all(self):  # a source that hands out an unsafe id
            return [Document.from_text("evil", "x", doc_id="../../evil")], []

    evil = Compilation(
        EvilSource("wiki", kb / "wiki"), RecordingCompiler(tiny_lm), LocalAdapterStore(kb / "adapters"), kb / "l"
    )
    result = evil.run()
    assert result.compiled == [] and "not a valid adapter id" in result.failed[0].message
    assert not (tmp_path / "evil").exists() and not (kb / "evil").exists()


def test_aggregate_compiles_a_page_with_the_pages_it_links_to(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    kb = make_kb(
        tmp_path,
        {"a.md": "A links to [[B page|b]] and [[Missing]].", "b-page.md": "# B page\nB fact.", "c.md": "C."},
    )
    compiler = RecordingCompiler(tiny_lm)
    compilation(kb, compiler, aggregate=True).run()
    assert AdapterManifest.read(kb / "adapters" / "a").inputs == ["a", "b-page"]
    assert "B fact." in compiler.texts["a"]
    (kb / "wiki" / "b-page.md").write_text("# B page\nB fact, revised.", encoding="utf-8")
    again = compilation(kb, compiler, aggregate=True).run()
    assert sorted(again.compiled) == ["a", "b-page"]  # a's adapter holds b's text, so it is rebuilt


def test_batches_go_to_batch_compilers_and_a_bad_batch_falls_back(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    kb = make_kb(tmp_path, {f"p{i}.md": f"page {i}" for i in range(5)} | {"p5.md": "EXPLODE"})
    compiler = BatchRecordingCompiler(tiny_lm)
    summary = compilation(kb, compiler, batch_size=4).run()
    assert compiler.batches[:2] == [4, 2]  # the second batch fails on p5, then runs one at a time
    assert sorted(summary.compiled) == [f"p{i}" for i in range(5)]
    assert [f.name for f in summary.failed] == ["p5.md"]


def test_a_second_compile_waits_for_the_lock(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    kb = make_kb(tmp_path, {"a.md": "A."})
    lock = kb / ".loracle" / "compile.lock"
    lock.parent.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import fcntl,time; f=open({str(lock)!r},'w'); fcntl.flock(f, 2); print(1, flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"1"
        with pytest.raises(LockTimeout, match="another compile"):
            compilation(kb, RecordingCompiler(tiny_lm), lock_timeout_s=0.3).run()
    finally:
        holder.kill()
        holder.wait()
    assert compilation(kb, RecordingCompiler(tiny_lm), lock_timeout_s=5).run().compiled == ["a"]


CRASHING_COMPILE = """
import sys
from pathlib import Path
from types import SimpleNamespace
from tests.unit.test_pipeline import RecordingCompiler, compilation
lm = SimpleNamespace(name="tiny", fingerprint=sys.argv[3])  # all the double needs of a model
compiler = RecordingCompiler(lm, slow_s=float(sys.argv[2]))
original = compiler.compile_document


def announced(doc, folder):
    print("writing", doc.id, flush=True)
    return original(doc, folder)


compiler.compile_document = announced
compilation(Path(sys.argv[1]), compiler).run()
"""


def test_kill_9_mid_compile_leaves_no_corrupt_adapter_and_the_next_run_finishes(
    tmp_path: Path, tiny_lm: LoadedModel
) -> None:
    kb = make_kb(tmp_path, {f"p{i}.md": f"page {i}" for i in range(4)})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CRASHING_COMPILE), str(kb), "0.4", tiny_lm.fingerprint],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    seen = 0
    while seen < 2:  # the second document is mid-write (a partial weights file in its staging folder)
        line = child.stdout.readline()
        assert line, "the compile exited before it could be killed"
        seen += line.startswith(b"writing")
    time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait()
    store = LocalAdapterStore(kb / "adapters")
    assert any(p.name.startswith(".") for p in (kb / "adapters").iterdir())  # a staging leftover
    visible = store.ids()
    assert visible == ["p0"]
    for adapter_id in visible:
        check_adapter_folder(store.path(adapter_id))
        apply_adapters(tiny_lm, [store.path(adapter_id)])

    summary = compilation(kb, RecordingCompiler(tiny_lm)).run()
    assert sorted(summary.compiled) == ["p1", "p2", "p3"] and summary.unchanged == ["p0"]
    assert sorted(p.name for p in (kb / "adapters").iterdir()) == ["p0", "p1", "p2", "p3"]


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_watch_recompiles_a_saved_page_once_per_burst_and_removes_deleted(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    kb = make_kb(tmp_path, {"old.md": "Old."})
    compiler = RecordingCompiler(tiny_lm)
    store = LocalAdapterStore(kb / "adapters")
    with Watch(compilation(kb, compiler), debounce_s=0.3) as watch:
        assert store.ids() == ["old"]  # caught up on start
        for round_ in range(10):  # 10 files saved 10 times each, within about a second
            for i in range(10):
                (kb / "wiki" / f"n{i}.md").write_text(f"note {i} version {round_}", encoding="utf-8")
            time.sleep(0.05)
        (kb / "wiki" / "old.md").unlink()
        wait_for(lambda: len(store.ids()) == 10 and watch.status.removed == 1)
        time.sleep(0.5)
    counts = Counter(compiler.calls)
    assert counts == Counter({"old": 1} | {f"n{i}": 1 for i in range(10)})
    assert all("version 9" in compiler.texts[f"n{i}"] for i in range(10))
    assert watch.status.state == "stopped" and not watch.status.failed
    assert len(watch.status.latencies) == 10


def test_knowledge_base_facade_with_pluggable_parts(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    kb_root = make_kb(tmp_path, {"a.md": "A."})
    kb = KnowledgeBase(kb_root, compiler=RecordingCompiler(tiny_lm), lm=tiny_lm)
    assert kb.compile_all().compiled == ["a"]
    with kb.watch(debounce_s=0.1):
        (kb_root / "wiki" / "b.md").write_text("B.", encoding="utf-8")
        wait_for(lambda: [m.id for m in kb.adapters()] == ["a", "b"])
    assert kb.adapters()[1].base_fingerprint == tiny_lm.fingerprint


def test_watch_ingests_a_raw_file_into_the_wiki_and_compiles_its_pages(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    from loracle.wiki import init_kb
    from tests.unit.test_wiki_helpers import scripted_llm

    init_kb(tmp_path / "kb")
    compiler = RecordingCompiler(tiny_lm)
    kb = KnowledgeBase(tmp_path / "kb", compiler=compiler, lm=tiny_lm)
    with kb.watch(debounce_s=0.1, ingest=kb.wiki_ingest(writer=scripted_llm())) as watch:
        (tmp_path / "kb" / "raw" / "ferry.md").write_text("The Varn ferry sails at dawn. It has two decks.")
        wait_for(lambda: watch.status.ingested == 1 and any(m.source == "wiki" for m in kb.adapters()), 30)
    assert not watch.status.failed
    assert any("Varn ferry" in text for text in compiler.texts.values())  # a page written from raw/ was compiled


class ConfiguredCompiler(RecordingCompiler):
    """The test double with options, recorded in its manifests as the learners record theirs."""

    name = "ttt"

    def __init__(self, lm: LoadedModel, **options: object) -> None:
        super().__init__(lm)
        self.config = learner_config("ttt", options)

    def compile_document(self, doc: Document, folder: Path) -> CompileReport:
        report = super().compile_document(doc, folder)
        manifest = AdapterManifest.read(folder)
        manifest.updated(config=self.config.model_dump()).write(folder)
        return report


def test_an_adapter_compiled_with_other_options_is_compiled_again(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    kb = make_kb(tmp_path, {"alpha.md": "# Alpha\nOne.", "beta.md": "Two."})
    first = compilation(kb, ConfiguredCompiler(tiny_lm, steps_per_doc=3)).run()
    assert sorted(first.compiled) == ["alpha", "beta"]
    same = compilation(kb, ConfiguredCompiler(tiny_lm, steps_per_doc=3)).run()
    assert same.compiled == [] and sorted(same.unchanged) == ["alpha", "beta"]
    other = compilation(kb, ConfiguredCompiler(tiny_lm, steps_per_doc=4)).run()
    assert sorted(other.compiled) == ["alpha", "beta"]
    manifest_path = kb / "adapters" / "alpha" / "manifest.json"
    stored = json.loads(manifest_path.read_text(encoding="utf-8"))
    stored["config"]["retired_option"] = 1  # an option the learner no longer has: compiled again, no crash
    manifest_path.write_text(json.dumps(stored), encoding="utf-8")
    assert compilation(kb, ConfiguredCompiler(tiny_lm, steps_per_doc=4)).run().compiled == ["alpha"]
