"""Compile orchestration: keep a store of adapters current with a folder of documents, like a build system.

`Compilation.run()` compiles every new or changed document (by content hash), removes the adapters of
documents that are gone, and reports a failing document by name while the others go on. Only one
compilation writes to a store at a time (a file lock the OS releases even on kill -9); every adapter is
built in a hidden staging folder and published by rename, so a crash never leaves a corrupt adapter visible.
`Compilation.compile_paths()` is the same for a few changed files (what `watch` calls).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loracle.adapters.compiler import BatchDocumentCompiler, CompileReport, DocumentCompiler, ParallelDocumentCompiler
from loracle.adapters.lock import exclusive_lock
from loracle.adapters.manifest import AdapterManifest
from loracle.adapters.store import AdapterStore, check_adapter_id
from loracle.compile_limit import DocumentLimit
from loracle.config import CompileConfig
from loracle.crash import crash_point
from loracle.documents import Document, content_hash, slugify
from loracle.errors import LoracleError
from loracle.learners import learner_config
from loracle.sources.folder import DocumentSource, FolderSource, iter_source_files

#: wiki files that are bookkeeping, not knowledge: never compiled
WIKI_SPECIAL_PAGES = frozenset({"index", "log", "schema"})
#: --aggregate: at most this many linked pages, and this many characters in all, go into one adapter
MAX_LINKED_PAGES = 4
MAX_AGGREGATE_CHARS = 24_000


def raw_source(kb_root: Path) -> FolderSource:
    return FolderSource("raw", kb_root / "raw")


def wiki_source(kb_root: Path) -> FolderSource:
    return FolderSource("wiki", kb_root / "wiki", skip_ids=WIKI_SPECIAL_PAGES)


@dataclass
class Failure:
    name: str
    message: str


@dataclass
class CompileSummary:
    """What one compile did: adapter ids compiled, left alone, removed, and documents that failed."""

    compiled: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    compile_seconds: dict[str, float] = field(default_factory=dict)

    def merge(self, other: CompileSummary) -> None:
        self.compiled += other.compiled
        self.unchanged += other.unchanged
        self.removed += other.removed
        self.failed += other.failed
        self.seconds += other.seconds
        self.compile_seconds.update(other.compile_seconds)


@dataclass(frozen=True)
class CompileEvent:
    """One step of a compile, for a progress display."""

    #: "compiling" (about to start), "compiled" or "failed"
    event: str
    #: the adapter id
    name: str
    #: documents finished so far (compiled or failed), of `total` to compile
    done: int
    total: int
    #: "compiled" and "failed": the document's seconds (a batch's time shared out evenly)
    seconds: float | None = None


Progress = Callable[[CompileEvent], None]


def _no_progress(event: CompileEvent) -> None:
    return None


@dataclass
class Job:
    """One adapter to build: the document the learner reads and what the manifest records."""

    adapter_id: str
    doc: Document
    inputs: list[str]


class Compilation:
    """Compile a source's documents into a store with a compiler (see the module docstring)."""

    def __init__(
        self,
        source: DocumentSource,
        compiler: DocumentCompiler,
        store: AdapterStore,
        lock_path: Path,
        *,
        aggregate: bool = False,
        batch_size: int = 1,
        base_model: str = "",
        base_fingerprint: str = "",
        lock_timeout_s: float = 600.0,
        progress: Progress = _no_progress,
        limit: DocumentLimit | None = None,
    ) -> None:
        self.source = source
        self.compiler = compiler
        self.store = store
        self.lock_path = lock_path
        self.aggregate = aggregate
        self.batch_size = max(1, batch_size)
        self.base_model = base_model
        self.base_fingerprint = base_fingerprint
        self.lock_timeout_s = lock_timeout_s
        self.progress = progress
        self.limit = limit or DocumentLimit(CompileConfig().max_document_tokens)
        self._before = 0

    def run(self) -> CompileSummary:
        """Bring the whole store up to date with the source."""
        start = time.perf_counter()
        with exclusive_lock(self.lock_path, self.lock_timeout_s):
            self.store.cleanup()
            docs, errors = self.source.read_all()
            summary = CompileSummary(failed=[Failure(_name(e.path), e.message) for e in errors])
            present = {d.id for d in docs} | {i for e in errors if (i := self.source.doc_id(e.path))}
            existing = {m.id: m for m in self.store.list()}
            for adapter_id, manifest in existing.items():
                if manifest.source == self.source.name and adapter_id not in present:
                    self.store.remove(adapter_id)
                    summary.removed.append(adapter_id)
            self._build(self._jobs(docs, docs), existing, summary)
        summary.seconds = time.perf_counter() - start
        return summary

    def compile_paths(self, paths: Sequence[Path]) -> CompileSummary:
        """Bring the adapters of these files up to date (deleted files lose their adapters)."""
        start = time.perf_counter()
        with exclusive_lock(self.lock_path, self.lock_timeout_s):
            existing = {m.id: m for m in self.store.list()}
            summary = CompileSummary()
            changed_ids: set[str] = set()
            for path in paths:
                doc_id = self.source.doc_id(path)
                if doc_id is None:
                    continue
                if not path.exists():
                    manifest = existing.get(doc_id)
                    if manifest is not None and manifest.source == self.source.name:
                        self.store.remove(doc_id)
                        summary.removed.append(doc_id)
                    continue
                changed_ids.add(doc_id)
            if changed_ids:
                self._build(self._changed_jobs(paths, changed_ids, summary), existing, summary)
        summary.seconds = time.perf_counter() - start
        return summary

    def _changed_jobs(self, paths: Sequence[Path], changed_ids: set[str], summary: CompileSummary) -> list[Job]:
        if self.aggregate:  # the linked pages are needed too
            docs, errors = self.source.read_all()
            summary.failed += [
                Failure(_name(e.path), e.message) for e in errors if self.source.doc_id(e.path) in changed_ids
            ]
            return self._jobs([d for d in docs if d.id in changed_ids], docs)
        docs = []
        for path in dict.fromkeys(p for p in paths if p.exists() and self.source.doc_id(p) in changed_ids):
            try:
                docs.append(self.source.read(path))
            except LoracleError as exc:
                summary.failed.append(Failure(_name(path), str(exc)))
        return self._jobs(docs, docs)

    def _jobs(self, wanted: Sequence[Document], all_docs: Sequence[Document]) -> list[Job]:
        if not self.aggregate:
            return [Job(d.id, d, [d.id]) for d in wanted]
        by_key = {}
        for doc in all_docs:
            by_key.setdefault(doc.id, doc)
            by_key.setdefault(slugify(doc.title), doc)
        return [self._aggregate(doc, by_key) for doc in wanted]

    def _aggregate(self, doc: Document, by_key: dict[str, Document]) -> Job:
        """The page followed by the pages its [[wikilinks]] point to (bounded in count and characters)."""
        parts, inputs, budget = [doc.text], [doc.id], MAX_AGGREGATE_CHARS - len(doc.text)
        for link in doc.links:
            target = by_key.get(slugify(link))
            if target is None or target.id in inputs or len(inputs) > MAX_LINKED_PAGES:
                continue
            section = f"## {target.title}\n\n{target.text}"
            if len(section) > budget:
                continue
            parts.append(section)
            inputs.append(target.id)
            budget -= len(section)
        text = "\n\n".join(parts)
        combined = Document(
            id=doc.id,
            title=doc.title,
            text=text,
            path=doc.path,
            frontmatter=doc.frontmatter,
            links=doc.links,
            hash=content_hash(text),
        )
        return Job(doc.id, combined, inputs)

    def _up_to_date(self, job: Job, manifest: AdapterManifest | None) -> bool:
        return (
            manifest is not None
            and manifest.content_hash == job.doc.hash
            and manifest.learner == self.compiler.name
            and manifest.source == self.source.name
            and manifest.inputs == job.inputs
            and (not self.base_fingerprint or manifest.base_fingerprint == self.base_fingerprint)
            and self._same_options(manifest)
        )

    def _same_options(self, manifest: AdapterManifest) -> bool:
        """Whether the adapter was compiled with the compiler's options, read back through the learner's config
        (one recording an option the learner no longer has is compiled again; one from before manifests
        recorded options counts as the same)."""
        stored = (manifest.model_extra or {}).get("config")
        if self.compiler.config is None or stored is None:
            return True
        try:
            return learner_config(manifest.learner, stored) == self.compiler.config
        except LoracleError:
            return False

    def _build(self, jobs: list[Job], existing: dict[str, AdapterManifest], summary: CompileSummary) -> None:
        todo = []
        for job in jobs:
            try:
                check_adapter_id(job.adapter_id)
            except LoracleError as exc:
                summary.failed.append(Failure(_name(job.doc.path) or job.adapter_id, str(exc)))
                continue
            if self._up_to_date(job, existing.get(job.adapter_id)):
                summary.unchanged.append(job.adapter_id)
                continue
            try:
                self.limit.check(job.doc)  # before any model work
            except LoracleError as exc:
                summary.failed.append(Failure(_name(job.doc.path) or job.adapter_id, str(exc)))
                continue
            todo.append(job)
        self._before = len(summary.compiled) + len(summary.failed)  # progress counts only the documents in `todo`
        if isinstance(self.compiler, ParallelDocumentCompiler):
            self._build_parallel(todo, summary)
            return
        batch = self.batch_size if isinstance(self.compiler, BatchDocumentCompiler) else 1
        for first in range(0, len(todo), batch):
            self._build_batch(todo[first : first + batch], summary, len(todo))

    def _build_batch(self, jobs: list[Job], summary: CompileSummary, total: int) -> None:
        for job in jobs:
            self._report("compiling", job.adapter_id, summary, total)
        folders = [self.store.staging_folder(job.adapter_id) for job in jobs]
        start = time.perf_counter()
        try:
            try:
                reports = self._compile(jobs, folders)
            except Exception as exc:  # a learner failing on one document must not stop the batch
                if len(jobs) > 1:  # find the culprit: one at a time
                    for job, folder in zip(jobs, folders, strict=True):
                        shutil.rmtree(folder, ignore_errors=True)
                        self._build_batch([job], summary, total)
                    return
                job = jobs[0]
                summary.failed.append(Failure(_name(job.doc.path) or job.adapter_id, _one_line(job, exc)))
                self._report("failed", job.adapter_id, summary, total, time.perf_counter() - start)
                return
            crash_point("compile-staged")
            per_doc = (time.perf_counter() - start) / len(jobs)
            for job, folder, report in zip(jobs, folders, reports, strict=True):
                self._finish(job, folder, report, per_doc, summary, total)
        finally:
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)

    def _build_parallel(self, jobs: list[Job], summary: CompileSummary) -> None:
        """All the jobs at once on a ParallelDocumentCompiler; each is published as it comes back."""
        assert isinstance(self.compiler, ParallelDocumentCompiler)
        folders = [self.store.staging_folder(job.adapter_id) for job in jobs]
        try:
            for job in jobs:
                self._report("compiling", job.adapter_id, summary, len(jobs))
            for index, result in self.compiler.compile_many([job.doc for job in jobs], folders):
                job = jobs[index]
                if isinstance(result, Exception):
                    summary.failed.append(Failure(_name(job.doc.path) or job.adapter_id, _one_line(job, result)))
                    self._report("failed", job.adapter_id, summary, len(jobs), 0.0)
                    continue
                crash_point("compile-staged")
                self._finish(job, folders[index], result, result.seconds, summary, len(jobs))
        finally:
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)

    def _finish(
        self, job: Job, folder: Path, report: CompileReport, seconds: float, summary: CompileSummary, total: int
    ) -> None:
        """Publish one staged adapter and count it (a refusal to publish is that document's failure)."""
        try:
            self._publish(job, folder, report, seconds)
        except LoracleError as exc:
            summary.failed.append(Failure(_name(job.doc.path) or job.adapter_id, str(exc)))
            return
        summary.compiled.append(job.adapter_id)
        summary.compile_seconds[job.adapter_id] = seconds
        self._report("compiled", job.adapter_id, summary, total, seconds)

    def _report(
        self, event: str, adapter_id: str, summary: CompileSummary, total: int, seconds: float | None = None
    ) -> None:
        done = len(summary.compiled) + len(summary.failed) - self._before
        self.progress(CompileEvent(event, adapter_id, done, total, seconds))

    def _compile(self, jobs: list[Job], folders: list[Path]) -> list[CompileReport]:
        if len(jobs) > 1 and isinstance(self.compiler, BatchDocumentCompiler):
            return self.compiler.compile_documents([job.doc for job in jobs], folders)
        return [self.compiler.compile_document(job.doc, folder) for job, folder in zip(jobs, folders, strict=True)]

    def _publish(self, job: Job, folder: Path, report: CompileReport, seconds: float) -> None:
        written = AdapterManifest.read(folder)
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        timings = {**written.timings, "compile": round(seconds, 4), "learner": round(report.seconds, 4)}
        manifest = written.updated(
            id=job.adapter_id,
            document_id=job.doc.id,
            title=job.doc.title,
            content_hash=job.doc.hash,
            source=self.source.name,
            inputs=job.inputs,
            learner=self.compiler.name,
            base_model=written.base_model or self.base_model,
            base_fingerprint=written.base_fingerprint or self.base_fingerprint,
            timings=timings,
            size_bytes=size,
        )
        if self.base_fingerprint and manifest.base_fingerprint != self.base_fingerprint:
            raise LoracleError(f"{job.adapter_id}: the learner wrote an adapter for another base model")
        manifest.write(folder)
        self.store.put(job.adapter_id, folder)
        crash_point("adapter-published")


def _name(path: Path | None) -> str:
    return path.name if path is not None else ""


def _one_line(job: Job, exc: Exception) -> str:
    where = str(job.doc.path) if job.doc.path is not None else job.adapter_id
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return message if message.startswith(where) else f"{where}: {message}"


@dataclass
class WatchStatus:
    """What the watcher has done so far (read by the live status line)."""

    state: str = "starting"
    compiled: int = 0
    removed: int = 0
    ingested: int = 0
    failed: list[Failure] = field(default_factory=list)
    last: str = ""
    #: seconds from the file's last change to its adapter being published, per compiled file
    latencies: list[float] = field(default_factory=list)


class Watch:
    """Keep a store current while files change: a compile folder (wiki/) is recompiled per changed file;
    an ingest folder (raw/) hands each changed file to `ingest` (which writes wiki pages, which are then
    compiled in turn). Catching up at the start ingests the whole ingest folder, then compiles. Debounced per
    path. Leaving the context stops the watchers after the file in hand is finished; adapters are published
    atomically, so nothing is ever half-written."""

    def __init__(
        self,
        compilation: Compilation,
        *,
        ingest_root: Path | None = None,
        ingest: Callable[[Path], object] | None = None,
        debounce_s: float = 0.3,
        on_change: Callable[[WatchStatus], None] | None = None,
        catch_up: bool = True,
    ) -> None:
        self.compilation = compilation
        self.ingest_root = ingest_root
        self.ingest = ingest
        self.debounce_s = debounce_s
        self.on_change = on_change or (lambda status: None)
        self.catch_up = catch_up
        self.status = WatchStatus()
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> Watch:
        from loracle.sources.watch import watch_folder

        root = self.compilation.source.root
        root.mkdir(parents=True, exist_ok=True)
        if self.catch_up:
            self._set("catching up")
            if self.ingest is not None and self.ingest_root is not None and any(iter_source_files(self.ingest_root)):
                self._on_ingest_path(self.ingest_root)  # sources saved (or half-ingested) while nobody watched
            self._record(self.compilation.run(), started=None)
        self._stack = contextlib.ExitStack()
        try:
            self._stack.enter_context(watch_folder(root, self._on_compile_path, self.debounce_s))
            if self.ingest is not None and self.ingest_root is not None:
                self.ingest_root.mkdir(parents=True, exist_ok=True)
                self._stack.enter_context(watch_folder(self.ingest_root, self._on_ingest_path, self.debounce_s))
        except BaseException:
            self._stack.close()
            raise
        self._set("watching")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._set("stopping")
        if self._stack is not None:
            self._stack.close()
        self._set("stopped")

    def _on_compile_path(self, path: Path) -> None:
        started = _mtime(path)
        self._set(f"compiling {path.name}")
        self._record(self.compilation.compile_paths([path]), started)
        self._set("watching")

    def _on_ingest_path(self, path: Path) -> None:
        if self.ingest is None:
            return
        self._set(f"ingesting {path.name}")
        try:
            self.ingest(path)
            self.status.ingested += 1
        except Exception as exc:  # one bad source must not stop the watch
            self.status.failed.append(Failure(path.name, str(exc).splitlines()[0] if str(exc) else repr(exc)))
        self._set("watching")

    def _record(self, summary: CompileSummary, started: float | None) -> None:
        self.status.compiled += len(summary.compiled)
        self.status.removed += len(summary.removed)
        self.status.failed += summary.failed
        if summary.compiled:
            self.status.last = summary.compiled[-1]
            if started is not None:
                self.status.latencies.append(time.time() - started)
        elif summary.removed:
            self.status.last = f"removed {summary.removed[-1]}"

    def _set(self, state: str) -> None:
        self.status.state = state
        self.on_change(self.status)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
