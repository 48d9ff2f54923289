"""Learn documents with a named learner and keep the result as a named checkpoint; answer from one later.

Where a checkpoint NAME lives: a NAME with a slash is a path; otherwise the folder
<kb>/.loracle/checkpoints/<NAME> inside a knowledge base, else <user data dir>/loracle/checkpoints/<NAME>.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platformdirs import user_data_dir

from loracle.documents import Document, slugify
from loracle.errors import LoracleError
from loracle.learners import create_learner
from loracle.learners.base import Answer, LearnerConfig, LearnReport
from loracle.learners.checkpoint import META, check_replaceable, read_meta
from loracle.model import LoadedModel
from loracle.sources import read_folder

CHECKPOINTS = "checkpoints"


def checkpoint_path(name: str, kb_root: Path | None = None) -> Path:
    """The folder of checkpoint `name` (see the module docstring)."""
    if not name.strip():
        raise LoracleError("checkpoint name is empty")
    if "/" in name or os.sep in name:
        return Path(name).expanduser()
    if slugify(name) != name:
        raise LoracleError(
            f"{name!r}: not a plain checkpoint name (use letters, digits and dashes, e.g. {slugify(name)})"
        )
    if kb_root is None:
        from loracle.kb import find_kb

        try:
            kb_root = find_kb().root
        except LoracleError:
            return Path(user_data_dir("loracle")) / CHECKPOINTS / name
    return kb_root / ".loracle" / CHECKPOINTS / name


def save_target(name: str, kb_root: Path | None = None) -> Path:
    """Where checkpoint `name` is written, checked before any learning rather than only when saving after it
    (`--save notes/` naming the documents themselves is refused at once)."""
    path = checkpoint_path(name, kb_root)
    check_replaceable(path)
    return path


@dataclass
class LearnOutcome:
    report: LearnReport
    saved_to: Path | None
    errors: list[str] = field(default_factory=list)


def read_sources(paths: Sequence[Path]) -> tuple[list[Document], list[str]]:
    """Documents from files and folders; every unreadable file becomes one error line and is skipped."""
    docs: list[Document] = []
    errors: list[str] = []
    seen: set[str] = set()
    for path in paths:
        found, errs = read_folder(Path(path))
        errors += [str(e) for e in errs]
        for doc in found:
            if doc.id in seen:
                errors.append(f"{doc.path}: same id {doc.id!r} as an earlier document; skipped")
                continue
            seen.add(doc.id)
            docs.append(doc)
    return docs, errors


def learn_sources(
    lm: LoadedModel,
    learner: str,
    paths: Sequence[Path],
    target: Path | None = None,
    *,
    options: Mapping[str, Any] | LearnerConfig | None = None,
    on_error: Callable[[str], None] | None = None,
) -> LearnOutcome:
    """Read `paths`, learn the readable documents with `learner` (its `options` checked by its config), and save
    it to `target` (see `save_target`)."""
    docs, errors = read_sources(paths)
    for line in errors:
        if on_error:
            on_error(line)
    if not docs:
        raise LoracleError(f"no readable documents in {', '.join(str(p) for p in paths)}")
    instance = create_learner(learner, lm, options)
    report = instance.learn(docs)
    if target is not None:
        instance.save(target)
    return LearnOutcome(report, target, errors)


def answer_from_checkpoint(
    lm: LoadedModel, name: str, question: str, *, learner: str | None = None, kb_root: Path | None = None
) -> Answer:
    """Load checkpoint `name` into a fresh learner (by default the one that made it) and answer `question`."""
    path = checkpoint_path(name, kb_root)
    if not path.is_dir():
        raise LoracleError(f"{path}: no such checkpoint (make one with `loracle learn DOCS --save {name}`)")
    instance = create_learner(learner or checkpoint_learner(path), lm)
    instance.load(path)
    return instance.answer(question)


def checkpoint_learner(path: Path) -> str:
    """The name of the learner that wrote the checkpoint at `path`."""
    learner = read_meta(path).get("learner")
    if not isinstance(learner, str):
        raise LoracleError(f"{path / META}: names no learner")
    return learner
