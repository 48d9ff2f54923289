"""What an eval run reads: a folder of documents with a QA file, and/or a SQuAD-format file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from loracle.documents import Document
from loracle.errors import LoracleError
from loracle.eval.qa import QAItem, load_qa, spread
from loracle.eval.squad import load_squad, sample_questions
from loracle.sources import read_document

DOC_SUFFIXES = (".md", ".txt")


@dataclass
class EvalInputs:
    docs: dict[str, Document] = field(default_factory=dict)  # name QA items use -> document
    items: list[QAItem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: dict[str, object] = field(default_factory=dict)


def read_docs_folder(folder: Path, warn: Callable[[str], None]) -> dict[str, Document]:
    """Every .md/.txt file under `folder`, keyed by its path relative to it; unreadable files are skipped."""
    if not folder.is_dir():
        raise LoracleError(f"{folder}: not a folder of documents")
    docs: dict[str, Document] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in DOC_SUFFIXES:
            continue
        try:
            docs[path.relative_to(folder).as_posix()] = read_document(path)
        except LoracleError as exc:
            warn(str(exc))
    return docs


def load_inputs(
    docs_dir: Path | None = None,
    qa_file: Path | None = None,
    squad_file: Path | None = None,
    max_questions: int | None = None,
) -> EvalInputs:
    """Documents and questions for one run.

    `max_questions` caps each source (the QA file, the SQuAD file), spreading the questions over its
    documents. With --squad, the paragraphs holding the sampled questions are the documents learned (a paragraph
    per document); `notes` records how many questions and paragraphs were used out of how many.
    Questions naming a document that is not there are skipped with a warning; none left is an error.
    """
    inputs = EvalInputs()
    if docs_dir is None and squad_file is None:
        raise LoracleError("nothing to evaluate: give --docs DIR with --qa FILE, and/or --squad FILE")
    if docs_dir is not None:
        if qa_file is None:
            raise LoracleError("--docs needs --qa FILE.jsonl (the questions about those documents)")
        inputs.docs.update(read_docs_folder(docs_dir, inputs.warnings.append))
        pools: dict[tuple[str, ...], list[QAItem]] = {}
        missing: set[str] = set()
        for item in load_qa(qa_file):
            absent = [d for d in item.docs if d not in inputs.docs]
            if absent:
                inputs.warnings.append(f"{qa_file}: skipping {item.question!r}: no document {', '.join(absent)}")
                missing.update(absent)
                continue
            pools.setdefault(item.docs, []).append(item)
        if not pools:
            names = ", ".join(sorted(missing))
            raise LoracleError(f"{qa_file}: no question names a readable document of {docs_dir} (missing: {names})")
        inputs.items += spread(list(pools.values()), max_questions)
    if squad_file is not None:
        paragraphs = load_squad(squad_file)
        chosen = sample_questions(paragraphs, max_questions)
        used = {d for item in chosen for d in item.docs}
        for paragraph in paragraphs:
            if paragraph.key in used:
                inputs.docs[paragraph.key] = paragraph.document()
        inputs.items += chosen
        inputs.notes["squad"] = {
            "file": str(squad_file),
            "questions_used": len(chosen),
            "answerable_questions": sum(len(p.questions) for p in paragraphs),
            "paragraphs_learned": len(used),
            "paragraphs": len(paragraphs),
        }
    if not inputs.items:
        raise LoracleError("no questions to ask (max_questions must be at least 1)")
    return inputs
