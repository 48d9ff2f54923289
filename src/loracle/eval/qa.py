"""QA files: one JSON object a line, {"doc": "a.md", "q": "...", "a": ["accepted", ...]}."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from loracle.errors import LoracleError
from loracle.eval.scoring import normalize

T = TypeVar("T")


@dataclass(frozen=True)
class QAItem:
    docs: tuple[str, ...]  # "a.md+b.md" names two documents the question needs
    question: str
    answers: tuple[str, ...]


def parse_jsonl(path: Path, what: str, build: Callable[[dict], T]) -> list[T]:
    """`build` applied to each JSON line of `path`; an unreadable file or a bad line is one error naming it."""
    items: list[T] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LoracleError(f"{path}: cannot read {what} file ({exc})") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            items.append(build(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            raise LoracleError(f"{path}:{number}: not a {what} line ({exc})") from exc
    return items


def answers_of(row: dict) -> tuple[str, ...]:
    """The accepted answers of a row: "a" is one answer or a list of them. A row none of whose answers has a
    word left after scoring's normalisation could never be scored right, so it is refused."""
    answers = tuple(map(str, row["a"] if isinstance(row["a"], list) else [row["a"]]))
    if not any(normalize(a) for a in answers):
        raise ValueError('no accepted answer in "a"')
    return answers


def qa_item(row: dict) -> QAItem:
    """One QA line as an item; a blank question or document name is refused."""
    docs = tuple(name.strip() for name in str(row["doc"]).split("+"))
    if not all(docs):
        raise ValueError(f'a blank document name in "doc": {row["doc"]!r}')
    question = str(row["q"]).strip()
    if not question:
        raise ValueError('an empty question in "q"')
    return QAItem(docs, question, answers_of(row))


def load_qa(path: Path) -> list[QAItem]:
    """Parse a QA jsonl file; a bad line is an error naming the file and line."""
    items = parse_jsonl(path, "QA", qa_item)
    if not items:
        raise LoracleError(f"{path}: no questions")
    return items


def spread(pools: list[list[QAItem]], max_questions: int | None) -> list[QAItem]:
    """Up to `max_questions` items from `pools` (e.g. one pool per document), the same on every run.

    Takes items round-robin: the first item of evenly spaced pools, then the second, and so on, so a
    small cap still covers many pools.
    """
    total = sum(len(pool) for pool in pools)
    if max_questions is None or max_questions >= total:
        return [item for pool in pools for item in pool]
    chosen: list[QAItem] = []
    depth = 0
    while len(chosen) < max_questions:
        layer = [pool[depth] for pool in pools if len(pool) > depth]
        need = max_questions - len(chosen)
        if len(layer) <= need:
            chosen += layer
        else:
            step = len(layer) / need
            chosen += [layer[int(i * step)] for i in range(need)]
        depth += 1
    return chosen
