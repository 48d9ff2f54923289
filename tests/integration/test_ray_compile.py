"""Compile on a local Ray (2 CPUs): the same adapters as a local compile; failures by name; lost workers retried."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from safetensors.torch import load_file

from loracle.adapters.compiler import CompileReport
from loracle.documents import Document
from loracle.knowledge_base import KnowledgeBase
from loracle.learners import learner_config
from loracle.model import load_model
from loracle.ray_compile import LearnerSetup, RayCompiler
from loracle.runtime import configure_threads
from tests.compiled_kb import CORRA, KESTREL, save_seeded_model, write_page

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.integration
OPTIONS = {"steps_per_doc": 2}


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def _tensors(folder: Path) -> dict:
    return load_file(folder / "adapter_model.safetensors")


def test_a_ray_compile_equals_a_local_compile(local_ray: None, tmp_path: Path) -> None:
    model = str(save_seeded_model(tmp_path / "model"))
    local, remote = tmp_path / "local", tmp_path / "remote"
    for root in (local, remote):
        for page in (KESTREL, CORRA):
            write_page(root, page)
    before = configure_threads(1)  # the workers' thread count: the same float sums
    try:
        lm = load_model(model)
        made = KnowledgeBase(local, learner="ttt", lm=lm, learner_options=OPTIONS).compile_all()
        config = learner_config("ttt", OPTIONS)
        compiler = RayCompiler(LearnerSetup(model, "ttt", OPTIONS, threads=1), "ttt", config, workers=2)
        try:
            summary = KnowledgeBase(
                remote, learner="ttt", compiler=compiler, lm=lm, learner_options=OPTIONS
            ).compile_all()
        finally:
            compiler.close()
    finally:
        configure_threads(before)
    assert sorted(summary.compiled) == sorted(made.compiled) == sorted([KESTREL.id, CORRA.id]) and not summary.failed
    for page in (KESTREL, CORRA):
        ours, theirs = local / "adapters" / page.id, remote / "adapters" / page.id
        a, b = _tensors(ours), _tensors(theirs)
        assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
        assert json.loads((ours / "adapter_config.json").read_text()) == json.loads(
            (theirs / "adapter_config.json").read_text()
        )
        mine, yours = (json.loads((f / "manifest.json").read_text()) for f in (ours, theirs))
        for key in ("content_hash", "learner", "base_fingerprint", "source", "config"):
            assert mine[key] == yours[key], key
    again = KnowledgeBase(remote, learner="ttt", lm=lm, learner_options=OPTIONS).compile_all()
    assert sorted(again.unchanged) == sorted([KESTREL.id, CORRA.id])  # a local compile sees them as its own


class _Scripted:
    """A stand-in learner for the failure paths: "bad" raises, "crash" kills its worker the first time."""

    name = "scripted"
    config = None

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def compile_document(self, doc: Document, folder: Path) -> CompileReport:
        if doc.id == "bad":
            raise ValueError("no facts in it")
        if doc.id == "crash" and not self.marker.exists():
            self.marker.write_text("died once")
            os._exit(1)  # the worker process is lost mid-document
        (folder / "adapter_model.safetensors").write_bytes(doc.text.encode())
        (folder / "manifest.json").write_text(json.dumps({"id": doc.id}))
        return CompileReport(doc.id, 0.01)


@dataclass(frozen=True)
class _ScriptedSetup:
    marker: Path

    def build(self) -> _Scripted:
        return _Scripted(self.marker)


def test_a_failing_document_is_named_and_a_lost_worker_s_document_is_retried(local_ray: None, tmp_path: Path) -> None:
    docs = [
        Document.from_text(f"Text of {name}.", name, path=Path(f"{name}.md"), doc_id=name)
        for name in ("ok", "bad", "crash")
    ]
    folders = [tmp_path / doc.id for doc in docs]
    for folder in folders:
        folder.mkdir()
    compiler = RayCompiler(_ScriptedSetup(tmp_path / "marker"), "scripted", None, workers=2)
    try:
        results = dict(compiler.compile_many(docs, folders))
    finally:
        compiler.close()
    assert (
        isinstance(results[0], CompileReport)
        and (folders[0] / "adapter_model.safetensors").read_bytes() == b"Text of ok."
    )
    assert isinstance(results[1], Exception) and str(results[1]) == "bad.md: no facts in it"
    assert (tmp_path / "marker").exists() and isinstance(results[2], CompileReport)  # retried on a restarted worker
    assert json.loads((folders[2] / "manifest.json").read_text()) == {"id": "crash"}


def test_compile_takes_ray_s_address_and_the_options_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from loracle.cli import adapter_commands, app

    seen = {}

    def stop(knowledge: object, model: object, address: str, workers: int, threads: int) -> None:
        seen.update(address=address, workers=workers)
        raise SystemExit(0)

    monkeypatch.setattr(adapter_commands, "open_kb", lambda *args: None)  # no knowledge base or model needed
    monkeypatch.setattr(adapter_commands, "on_ray", stop)
    result = CliRunner().invoke(app, ["compile", "--ray", "ray://head:10001", "--ray-workers", "3"])
    assert result.exit_code == 0 and seen == {"address": "ray://head:10001", "workers": 3}, result.output
