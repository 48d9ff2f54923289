"""QA files: one JSON object a line, {"doc": "a.md", "q": "...", "a": ["accepted", ...]}."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from loracle.errors import LoracleError


@dataclass(frozen=True)
class QAItem:
    docs: tuple[str, ...]  # "a.md+b.md" names two documents the question needs
    question: str
    answers: tuple[str, ...]


def load_qa(path: Path) -> list[QAItem]:
    """Parse a QA jsonl file; a bad line is an error naming the file and line."""
    items: list[QAItem] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LoracleError(f"{path}: cannot read QA file ({exc})") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            answers = row["a"] if isinstance(row["a"], list) else [row["a"]]
            items.append(QAItem(tuple(str(row["doc"]).split("+")), str(row["q"]), tuple(map(str, answers))))
        except (ValueError, KeyError, TypeError) as exc:
            raise LoracleError(f"{path}:{number}: not a QA line ({exc})") from exc
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
