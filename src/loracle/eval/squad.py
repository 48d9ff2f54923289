"""SQuAD-format files: each paragraph becomes a `Document`, each answerable question a `QAItem`.

A paragraph (rather than a whole article) is the unit of a document so that the in-context ceiling puts
the right ~150 tokens in the prompt, as a retriever would, instead of a 5,000-token article.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from loracle.documents import Document, slugify
from loracle.errors import LoracleError
from loracle.eval.qa import QAItem, spread


@dataclass(frozen=True)
class SquadParagraph:
    key: str  # "<article-slug>-p<NN>", the document name QA items refer to
    article: str
    context: str
    questions: tuple[QAItem, ...]  # answerable questions only

    def document(self) -> Document:
        number = int(self.key.rsplit("-p", 1)[1])
        return Document.from_text(self.context, f"{self.article} (paragraph {number})", doc_id=self.key)


def load_squad(path: Path) -> list[SquadParagraph]:
    """Every paragraph of every article, with its answerable questions (unanswerable ones are dropped)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise LoracleError(f"{path}: cannot read SQuAD file ({exc})") from exc
    except ValueError as exc:
        raise LoracleError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise LoracleError(f"{path}: not a SQuAD file (no top-level 'data' list)")
    paragraphs: list[SquadParagraph] = []
    try:
        for article in data["data"]:
            title = str(article["title"]).replace("_", " ")
            slug = slugify(title)
            for number, para in enumerate(article["paragraphs"], 1):
                key = f"{slug}-p{number:02d}"
                items = []
                for qa in para["qas"]:
                    answers = tuple(dict.fromkeys(str(a["text"]) for a in qa.get("answers", [])))
                    if qa.get("is_impossible") or not answers:
                        continue
                    items.append(QAItem((key,), str(qa["question"]).strip(), answers))
                paragraphs.append(SquadParagraph(key, title, str(para["context"]), tuple(items)))
    except (KeyError, TypeError) as exc:
        raise LoracleError(f"{path}: not a SQuAD file (missing or malformed field {exc})") from exc
    if not any(p.questions for p in paragraphs):
        raise LoracleError(f"{path}: no answerable questions")
    return paragraphs


def sample_questions(paragraphs: list[SquadParagraph], max_questions: int | None) -> list[QAItem]:
    """Up to `max_questions` answerable questions, spread across paragraphs, the same on every run."""
    return spread([list(p.questions) for p in paragraphs if p.questions], max_questions)
