"""The interface between compile orchestration and learners: turn one document into one adapter folder."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from loracle.documents import Document

if TYPE_CHECKING:
    from pydantic import BaseModel


@dataclass
class CompileReport:
    """What compiling one document cost."""

    doc_id: str
    seconds: float
    tokens: int = 0
    bytes_on_disk: int = 0
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class DocumentCompiler(Protocol):
    """A learner that compiles a document into a PEFT LoRA adapter.

    `compile_document` writes adapter_model.safetensors, adapter_config.json and manifest.json (with
    base_fingerprint, and `config` as "config") into `folder`, which exists and is empty and is not visible
    to readers yet: the pipeline adds its own manifest fields and publishes the folder atomically. An adapter
    compiled with other options than `config` is out of date (None: the compiler has no options).
    """

    name: str
    config: BaseModel | None

    def compile_document(self, doc: Document, folder: Path) -> CompileReport: ...


@runtime_checkable
class BatchDocumentCompiler(DocumentCompiler, Protocol):
    """A compiler that reads several documents in one forward pass (the hypernetwork)."""

    def compile_documents(self, docs: Sequence[Document], folders: Sequence[Path]) -> list[CompileReport]: ...


@runtime_checkable
class ParallelDocumentCompiler(DocumentCompiler, Protocol):
    """A compiler that builds many documents at once, elsewhere (a Ray cluster's workers).

    `compile_many` yields (index into `docs`, result) as each document finishes, in any order: the result is
    the CompileReport with the adapter written into `folders[index]`, or the exception that document failed
    with (the others go on).
    """

    def compile_many(
        self, docs: Sequence[Document], folders: Sequence[Path]
    ) -> Iterator[tuple[int, CompileReport | Exception]]: ...
