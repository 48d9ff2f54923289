"""The general set that measures forgetting: general knowledge (closed-book) plus reading comprehension
(a paragraph given in the prompt). Both ship in loracle/data (see general_README.md there)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from loracle.eval.qa import answers_of, parse_jsonl
from loracle.model.chat import DOC_PROMPT

KNOWLEDGE_FILE = "general_knowledge.jsonl"
READING_FILE = "general_reading.jsonl"


@dataclass(frozen=True)
class GeneralItem:
    kind: str  # "knowledge" or "reading"
    question: str
    answers: tuple[str, ...]
    context: str = ""

    @property
    def prompt(self) -> str:
        """What a learner is asked: the question, with the paragraph in front for reading comprehension."""
        if self.kind == "reading":
            return DOC_PROMPT.format(doc=self.context.strip(), question=self.question)
        return self.question


def data_file(name: str) -> Path:
    return Path(str(resources.files("loracle") / "data" / name))


def load_general(path: Path, kind: str) -> list[GeneralItem]:
    return parse_jsonl(
        path, "general-set", lambda row: GeneralItem(kind, str(row["q"]), answers_of(row), str(row.get("context", "")))
    )


def bundled_general(exclude_contexts: set[str] | frozenset[str] = frozenset()) -> list[GeneralItem]:
    """Both bundled sets; reading items whose paragraph is among `exclude_contexts` (learned text) are left out."""
    knowledge = load_general(data_file(KNOWLEDGE_FILE), "knowledge")
    reading = load_general(data_file(READING_FILE), "reading")
    normalized = {" ".join(c.split()) for c in exclude_contexts}
    return knowledge + [r for r in reading if " ".join(r.context.split()) not in normalized]
