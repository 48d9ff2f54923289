"""Compile documents on a Ray cluster: each worker loads the base model once and compiles documents into
adapters; the adapter files come back to the driver, which publishes them into the store exactly as a
local compile does (staging folder, manifest, rename).

A document failing on a worker comes back as that document's error, and the rest go on. A worker that is
lost (its process or node dies) is restarted by Ray and its document retried (`max_retries` times).
Ray is optional (`pip install 'loracle[ray]'`); every node needs loracle and the base model it names.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from loracle.adapters.compiler import CompileReport, DocumentCompiler
from loracle.atomic import write_bytes_atomic
from loracle.documents import Document
from loracle.errors import LoracleError

if TYPE_CHECKING:
    from pydantic import BaseModel


class WorkerSetup(Protocol):
    """What a worker runs once when it starts: build the compiler it compiles every document with."""

    def build(self) -> DocumentCompiler: ...


@dataclass(frozen=True)
class LearnerSetup:
    """A learner on a base model, loaded by the worker itself (`model` as loracle.toml's [model] base)."""

    model: str
    learner: str
    options: dict[str, Any] = field(default_factory=dict)
    threads: int = 1

    def build(self) -> DocumentCompiler:
        from loracle.knowledge_base import load_compiler
        from loracle.model import load_model
        from loracle.runtime import configure_threads

        configure_threads(self.threads)
        return load_compiler(self.learner, load_model(self.model), self.options)


class _Worker:
    """A Ray actor: one compiler (one base model in memory), many documents."""

    def __init__(self, setup: WorkerSetup) -> None:
        self.compiler = setup.build()

    def compile(self, doc: Document) -> tuple[CompileReport | None, dict[str, bytes], str]:
        """(report, the adapter folder's files, "") or (None, {}, the one-line error)."""
        with tempfile.TemporaryDirectory(prefix="loracle-ray-") as tmp:
            folder = Path(tmp) / "adapter"
            folder.mkdir()
            try:
                report = self.compiler.compile_document(doc, folder)
            except Exception as exc:  # this document failed; the worker goes on with the next
                lines = str(exc).splitlines()
                return None, {}, lines[0] if lines else type(exc).__name__
            return report, {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}, ""


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise LoracleError("--ray: Ray is not installed (pip install 'loracle[ray]')") from exc
    return ray


class RayCompiler:
    """A ParallelDocumentCompiler over `workers` Ray actors (None: one per CPU the cluster has, over `cpus`).

    `name` and `config` are the learner's, so adapters compiled here and locally are interchangeable and
    up to date with each other. Connects to `address` (None: RAY_ADDRESS, a running local cluster, or a new
    one) unless Ray is already initialised in this process.
    """

    def __init__(
        self,
        setup: WorkerSetup,
        name: str,
        config: BaseModel | None,
        *,
        address: str | None = None,
        workers: int | None = None,
        cpus: int = 1,
        max_retries: int = 2,
    ) -> None:
        self.setup, self.name, self.config = setup, name, config
        self.address, self.workers, self.cpus, self.max_retries = address, workers, cpus, max_retries
        self._actors: list[Any] = []

    def _start(self) -> list[Any]:
        if self._actors:
            return self._actors
        ray = _ray()
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False, logging_level="WARNING")
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = f"--ray {self.address}" if self.address else "--ray"
                raise LoracleError(f"{where}: cannot reach a Ray cluster ({exc})") from exc
        count = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1) // self.cpus))
        actor = ray.remote(num_cpus=self.cpus, max_restarts=self.max_retries, max_task_retries=self.max_retries)(
            _Worker
        )
        self._actors = [actor.remote(self.setup) for _ in range(count)]
        return self._actors

    def compile_document(self, doc: Document, folder: Path) -> CompileReport:
        [(_, result)] = list(self.compile_many([doc], [folder]))
        if isinstance(result, Exception):
            raise result
        return result

    def compile_many(
        self, docs: Sequence[Document], folders: Sequence[Path]
    ) -> Iterator[tuple[int, CompileReport | Exception]]:
        """Keep every worker busy with one document at a time (a lost worker loses one); yield as they finish."""
        ray = _ray()
        idle, queue, running = list(self._start()), deque(range(len(docs))), {}
        while queue or running:
            while queue and idle:
                index, worker = queue.popleft(), idle.pop()
                running[worker.compile.remote(docs[index])] = (index, worker)
            if not running:  # every worker is gone
                for index in queue:
                    yield index, LoracleError(f"{_where(docs[index])}: no Ray worker left to compile it")
                return
            [done], _ = ray.wait(list(running), num_returns=1)
            index, worker = running.pop(done)
            try:
                report, files, error = ray.get(done)
            except ray.exceptions.RayError as exc:  # the worker died for good (or never started)
                message = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else type(exc).__name__
                yield index, LoracleError(f"{_where(docs[index])}: its Ray worker was lost ({message})")
                continue
            idle.append(worker)
            if report is None:
                yield (
                    index,
                    LoracleError(error if error.startswith(_where(docs[index])) else f"{_where(docs[index])}: {error}"),
                )
                continue
            yield index, _unpack(files, folders[index], report)

    def close(self) -> None:
        """Let the workers go (their models with them)."""
        if self._actors:
            ray = _ray()
            for actor in self._actors:
                ray.kill(actor)
            self._actors = []


def _unpack(files: dict[str, bytes], folder: Path, report: CompileReport) -> CompileReport | Exception:
    """Write a worker's adapter files into the (empty, unpublished) staging folder."""
    for name, data in files.items():
        if Path(name).name != name or name.startswith("."):
            return LoracleError(f"{report.doc_id}: a Ray worker sent a file named {name!r}; not written")
        write_bytes_atomic(folder / name, data)
    return report


def _where(doc: Document) -> str:
    return str(doc.path) if doc.path is not None else doc.id
