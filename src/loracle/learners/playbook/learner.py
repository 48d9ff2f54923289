"""The `playbook` learner: generate / reflect / curate loops that grow a JSON playbook (ACE-style).

For each document the writer LLM writes practice questions with their answers (from the document); the
model answers them closed-book with the current playbook in its prompt (generator); the writer compares
those answers with the document and distils lessons (reflector); then it turns the lessons into PATCH
operations — add, update or remove one bullet by id — that are applied to the playbook (curator). The
playbook is never rewritten whole, holds at most `max_bullets` bullets of at most `max_chars` characters,
and is written atomically after every patch. At answer time the playbook goes in the system prompt.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from loracle.documents import Document
from loracle.errors import LoracleError
from loracle.eval.scoring import is_correct
from loracle.learners.base import Answer, LearnReport
from loracle.learners.checkpoint import learner_meta, load_checkpoint, save_checkpoint, stored_config
from loracle.learners.playbook.book import Patch, PatchOp, Playbook, playbook_path
from loracle.learners.playbook.config import PlaybookConfig
from loracle.llm import LLM, JSONRequest, make_llm
from loracle.model import GenerationConfig, LoadedModel, Message, generate_chat, question_messages

T = TypeVar("T", bound=BaseModel)


class PracticeItem(BaseModel):
    question: str
    answer: str


class Practice(BaseModel):
    questions: list[PracticeItem] = Field(default_factory=list)


class Lessons(BaseModel):
    lessons: list[str] = Field(default_factory=list)


PRACTICE_PROMPT = (
    "Write {n} short quiz questions about specific facts (names, numbers, dates, places) in this document, "
    "each with its short answer copied from the document.\n\nDocument ({title}):\n{text}"
)
REFLECT_PROMPT = (
    "A student answered quiz questions about the document below without seeing it. For each answer that "
    "is wrong or incomplete, write one lesson: a short, self-contained sentence stating the correct fact "
    "from the document (name the subject in full).\n\nDocument ({title}):\n{text}\n\nQuiz:\n{quiz}"
)
CURATE_PROMPT = (
    "You keep a playbook of short bullets. Turn the new lessons into edit operations: "
    '{{"op": "add", "section": "fact"|"strategy"|"pitfall", "text": ...}} for a new bullet, '
    '{{"op": "update", "id": ..., "text": ...}} to correct a bullet, {{"op": "remove", "id": ...}} for a wrong one. '
    "Never repeat a bullet that is already there.\n\nPlaybook:\n{playbook}\n\nNew lessons:\n{lessons}"
)
PRACTICE_CHARS = 120  # longest practice question or answer a local writer may write
PRACTICE_LINES = "Write each on two lines:\nQ: <question>\nA: <short answer>"
_QA_LINES = re.compile(r"^\s*Q\s*[:.]\s*(.+?)\s*\n\s*A\s*[:.]\s*(.+?)\s*$", re.MULTILINE)
ANSWER_SYSTEM = "Use these notes from your playbook when they help:\n{playbook}"


class PlaybookLearner:
    """Grows a playbook with the writer LLM; answers with the base model and the playbook in the prompt."""

    name = "playbook"

    def __init__(
        self,
        lm: LoadedModel,
        config: PlaybookConfig | None = None,
        *,
        llm: LLM | None = None,
        kb_state: Path | str | None = None,
    ) -> None:
        from loracle.config import Config

        self.lm = lm
        self.config = config or PlaybookConfig()
        self.llm = llm or make_llm(Config(), "writer", lm)
        #: when set, the playbook lives at <kb_state>/playbook.json and is saved after every patch
        self.path = playbook_path(Path(kb_state)) if kb_state is not None else None
        self.playbook = Playbook.read(self.path) if self.path else self._empty()
        self.playbook.max_bullets, self.playbook.max_chars = self.config.max_bullets, self.config.max_chars

    def _empty(self) -> Playbook:
        return Playbook(max_bullets=self.config.max_bullets, max_chars=self.config.max_chars)

    def learn(self, docs: Sequence[Document]) -> LearnReport:
        start = time.perf_counter()
        usage = self.llm.usage()
        log: list[dict] = []
        for doc in docs:
            log.append({"doc": doc.id, **self._learn_one(doc)})
        if self.path is not None:
            self.playbook.write(self.path)  # helpful/harmful counts changed even where no patch applied
        spent = self.llm.usage() - usage
        return LearnReport(
            self.name,
            len(docs),
            spent.prompt_tokens + spent.completion_tokens,
            time.perf_counter() - start,
            details={"bullets": len(self.playbook.bullets), "llm_calls": spent.calls, "log": log},
        )

    def _learn_one(self, doc: Document) -> dict:
        """One generate / reflect / curate round on `doc`; a failed LLM step leaves the playbook as it was."""
        try:
            practice = self._practice(doc)
        except LoracleError as exc:
            return {"error": f"practice questions: {exc}"}
        practice = [p for p in practice if p.question.strip() and p.answer.strip()]
        graded = []
        for item in practice:
            reply = self.answer(item.question).text
            graded.append((item, reply, is_correct(reply, [item.answer])))
        self._credit(graded)
        wrong = [(item, reply) for item, reply, ok in graded if not ok]
        if not wrong:
            return {"practice": len(practice), "wrong": 0, "applied": []}
        notes: dict = {"practice": len(practice), "wrong": len(wrong)}
        try:
            lessons = self.llm.ask_json(self.reflect_request(doc, wrong)).lessons
        except LoracleError as exc:
            notes["reflector_error"] = str(exc)
            lessons = []
        lessons = [" ".join(lesson.split()) for lesson in lessons if lesson.strip()]
        if not lessons:  # a reflector that said nothing usable: the missed practice facts are the lessons
            lessons = [f"{item.question} {item.answer}" for item, _ in wrong]
        patch = self._curate(lessons)
        applied = self.playbook.apply(patch)
        if self.path is not None and applied:
            self.playbook.write(self.path)
        return {**notes, "lessons": lessons, "applied": applied}

    def _practice(self, doc: Document) -> list[PracticeItem]:
        """Practice questions with answers from the document: JSON first; a small writer that cannot
        produce it gets a second chance with plain "Q: ... / A: ..." lines."""
        request = self.practice_request(doc)
        try:
            items = self.llm.ask_json(request).questions
        except LoracleError as json_error:
            prompt = request.messages[-1]["content"]
            reply = self.llm.complete(
                [{"role": "user", "content": f"{prompt}\n\n{PRACTICE_LINES}"}], max_tokens=self.config.writer_max_tokens
            )
            items = [PracticeItem(question=q.strip(), answer=a.strip()) for q, a in _QA_LINES.findall(reply)]
            if not items:
                raise LoracleError(f"{json_error}; the plain Q:/A: answer had no pairs either") from json_error
        return items[: self.config.questions_per_doc]

    def _curate(self, lessons: list[str]) -> Patch:
        """The curator's patch; when its JSON is unusable, each lesson becomes an `add` (still a patch)."""
        try:
            patch = self.llm.ask_json(self.curate_request(lessons))
        except LoracleError:
            patch = Patch()
        if not patch.operations:
            patch = Patch(operations=[PatchOp(op="add", section="fact", text=lesson) for lesson in lessons])
        return patch

    def practice_request(self, doc: Document) -> JSONRequest[Practice]:
        """Generator: practice questions with their answers, from the document."""
        prompt = PRACTICE_PROMPT.format(n=self.config.questions_per_doc, title=doc.title, text=doc.text.strip())
        return self._request(prompt, Practice, self.config.questions_per_doc, PRACTICE_CHARS)

    def reflect_request(self, doc: Document, wrong: Sequence[tuple[PracticeItem, str]]) -> JSONRequest[Lessons]:
        """Reflector: one lesson per practice question the model answered wrong (`wrong`: item, its reply)."""
        quiz = "\n".join(
            f"Q: {item.question}\nStudent: {reply}\nCorrect answer: {item.answer}" for item, reply in wrong
        )
        prompt = REFLECT_PROMPT.format(title=doc.title, text=doc.text.strip(), quiz=quiz)
        return self._request(prompt, Lessons, len(wrong), self.config.max_chars)

    def curate_request(self, lessons: Sequence[str]) -> JSONRequest[Patch]:
        """Curator: the lessons as patch operations on the playbook as it is now."""
        prompt = CURATE_PROMPT.format(
            playbook=self.playbook.render() or "(empty)", lessons="\n".join(f"- {lesson}" for lesson in lessons)
        )
        return self._request(prompt, Patch, len(lessons), self.config.max_chars)

    def _request(self, prompt: str, schema: type[T], max_items: int, max_chars: int) -> JSONRequest[T]:
        messages: list[Message] = [{"role": "user", "content": prompt}]
        return JSONRequest(messages, schema, self.config.writer_max_tokens, max(1, max_items), max_chars)

    def _credit(self, graded: list[tuple[PracticeItem, str, bool]]) -> None:
        """Bullets sharing words with a practice answer's reference count as helpful when it was right."""
        for item, _reply, ok in graded:
            words = {w for w in item.answer.lower().split() if len(w) > 2}
            for bullet in self.playbook.bullets:
                if words & set(bullet.text.lower().split()):
                    if ok:
                        bullet.helpful += 1
                    else:
                        bullet.harmful += 1

    def prompt_messages(self, question: str) -> list[Message]:
        """The question with the playbook as the system prompt (no system prompt while it is empty)."""
        rendered = self.playbook.render()
        return question_messages(question, system=ANSWER_SYSTEM.format(playbook=rendered) if rendered else None)

    def answer(self, question: str) -> Answer:
        start = time.perf_counter()
        config = GenerationConfig(max_new_tokens=self.config.max_new_tokens)
        text = generate_chat(self.lm, self.prompt_messages(question), config)
        return Answer(text, seconds=time.perf_counter() - start)

    def reset(self) -> None:
        self.playbook = self._empty()

    def save(self, path: Path) -> None:
        meta = {"playbook": self.playbook.model_dump()}
        save_checkpoint(path, self.name, self.lm.fingerprint, {}, meta, self.config)

    def load(self, path: Path) -> None:
        _, meta = load_checkpoint(path, self.name, self.lm.fingerprint)  # refuses another learner's or model's
        config = stored_config(path, self.name, meta)
        self.playbook = recorded_playbook(path, meta)
        self.config = config


def saved_playbook(folder: Path) -> Playbook:
    """The playbook a `playbook` checkpoint holds, read without a model; anything else is refused in one line."""
    return recorded_playbook(folder, learner_meta(folder, "playbook"))


def recorded_playbook(folder: Path, meta: dict[str, Any]) -> Playbook:
    """The playbook in the record `meta` of the checkpoint at `folder`, refused in one line if malformed."""
    try:
        return Playbook.model_validate(meta.get("playbook"))
    except ValidationError as exc:
        raise LoracleError(f"{folder}: the checkpoint's playbook is malformed ({exc.errors()[0]['msg']})") from exc
