"""Answers from a learner (the `context` learner: retrieval + the passages in context), with citations.

The learner learns the wiki's pages (or, before there is a wiki, the raw documents) and learns them again
when the folder changes. Its answer runs on the generation worker like every other use of the model.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Any

from loracle.documents import Document
from loracle.kb import KBPaths
from loracle.learners import create_learner
from loracle.learners.base import Answer, Learner
from loracle.model.loader import LoadedModel
from loracle.serve.search_view import folder_state
from loracle.serve.wiki_view import WikiView
from loracle.sources.folder import read_folder

ASK_LEARNERS = ("context",)


class LearnerAnswers:
    def __init__(self, lm: LoadedModel, kb: KBPaths) -> None:
        self.lm, self.kb = lm, kb
        self._learners: dict[str, tuple[Learner, tuple]] = {}
        self._lock = threading.Lock()

    def prepared(self, name: str) -> Learner:
        """The learner `name`, having learned the current documents (learning again only if they changed)."""
        with self._lock:
            state = (folder_state(self.kb.wiki), folder_state(self.kb.raw))
            current = self._learners.get(name)
            if current is not None and current[1] == state:
                return current[0]
            learner = current[0] if current else create_learner(name, self.lm)
            learner.reset()
            learner.learn(self._documents())
            self._learners[name] = (learner, state)
            return learner

    def _documents(self) -> list[Document]:
        pages = WikiView(self.kb.wiki).pages()
        if pages:
            return pages
        docs, _errors = read_folder(self.kb.raw) if self.kb.raw.is_dir() else ([], [])
        return docs


def answer_json(answer: Answer) -> dict[str, Any]:
    return {"text": answer.text, "seconds": answer.seconds, "citations": [asdict(c) for c in answer.citations]}
