"""Answers from a learner (the `context` learner: retrieval + the passages in context), with citations.

The learner learns the wiki's pages (or, before there is a wiki, the raw documents), read by the compile
pipeline's own sources so ids match the adapters', and learns them again when a file changes.
Call `answer` on the generation worker: it uses the model.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Any

from loracle.documents import Document
from loracle.kb import KBPaths
from loracle.learners import create_learner
from loracle.learners.base import Learner
from loracle.model.loader import LoadedModel
from loracle.pipeline import raw_source, wiki_source
from loracle.serve.changes import folder_state


class LearnerAnswers:
    def __init__(self, lm: LoadedModel, kb: KBPaths) -> None:
        self.lm, self.kb = lm, kb
        self._learners: dict[str, tuple[Learner, tuple]] = {}
        self._pages: dict[str, str] = {}  # document id -> wiki page (path under wiki/) to link citations to
        self._lock = threading.Lock()

    def answer(self, learner_name: str, question: str) -> dict[str, Any]:
        learner = self.prepared(learner_name)
        answer = learner.answer(question)
        citations = [{**asdict(c), "page": self._pages.get(c.doc_id)} for c in answer.citations]
        return {"learner": learner_name, "text": answer.text, "seconds": answer.seconds, "citations": citations}

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
        pages, _errors = wiki_source(self.kb.root).read_all()
        self._pages = {d.id: d.path.relative_to(self.kb.wiki).as_posix() for d in pages if d.path}
        if pages:
            return pages
        docs, _errors = raw_source(self.kb.root).read_all()
        return docs
