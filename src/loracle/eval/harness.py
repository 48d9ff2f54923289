"""The evaluation harness: every learner learns the same documents and answers the same questions closed-book.

Two references run in the same pass: the base model with no document (`floor`) and with the right
document(s) in the prompt (`ceiling`). Forgetting is the drop in accuracy on a general set (general
knowledge the base model gets right, plus reading comprehension with a paragraph in the prompt) from
before learning to after: ratio = (before - after) / before.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from loracle.documents import Document
from loracle.eval.batch import generate_batch
from loracle.eval.general import GeneralItem
from loracle.eval.interval import ratio_interval
from loracle.eval.qa import QAItem
from loracle.eval.scoring import is_correct, token_f1
from loracle.learners.base import Learner
from loracle.model import LoadedModel, Message, question_messages

FLOOR = "floor"
CEILING = "ceiling"
LearnerFactory = Callable[[str], Learner]
Progress = Callable[[str], None]


@dataclass
class QuestionResult:
    question: str
    docs: list[str]
    answers: list[str]
    reply: str
    correct: bool
    f1: float
    seconds: float
    #: the documents the learner's answer cites, by the names the questions use, in its order (what it drew
    #: on: routing and retrieval errors show here); empty for the references
    cited: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    """One row of the report: a reference (floor, ceiling) or a learner."""

    name: str
    kind: str  # "reference" or "learner"
    accuracy: float | None = None
    f1: float | None = None
    correct: int = 0
    total: int = 0
    learn_seconds_per_doc: float | None = None
    answer_seconds_per_question: float | None = None
    bytes_on_disk: int | None = None
    general_before: float | None = None
    general_after: float | None = None
    forgetting_ratio: float | None = None
    #: the 95% paired bootstrap interval of accuracy / the ceiling's (learners; None without a ratio): on a few
    #: dozen questions one reply moves the ratio by several points
    ceiling_interval: tuple[float, float] | None = None
    #: the general-set items answered wrong after learning, with the reply: what was forgotten (every
    #: knowledge item kept was right before; a reading item may have been wrong before too, see general_before)
    wrong_after: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    questions: list[QuestionResult] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalResult:
    model: str
    fingerprint: str
    documents: list[str]
    questions: int
    general: dict[str, Any]
    settings: dict[str, Any]
    runs: list[RunResult] = field(default_factory=list)
    seconds: float = 0.0

    def run(self, name: str) -> RunResult:
        for run in self.runs:
            if run.name == name:
                return run
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvalSettings:
    max_new_tokens: int = 48
    #: measure forgetting (costs one pass over the general set per learner, plus one for the base model)
    general: bool = True
    #: caps on the general set after selection (None = all): knowledge questions, reading paragraphs
    general_knowledge_max: int | None = None
    general_reading_max: int | None = None


def score(items: Sequence[QAItem], learner: Learner, names: Mapping[str, str]) -> list[QuestionResult]:
    """The learner's answer to each question, scored, with the documents it cites (`names` maps a document id
    to the name questions use)."""
    results = []
    for item in items:
        start = time.perf_counter()
        answer = learner.answer(item.question)
        seconds = time.perf_counter() - start
        cited = list(dict.fromkeys(names.get(c.doc_id, c.doc_id) for c in answer.citations))
        results.append(score_reply(item, answer.text, seconds, cited))
    return results


def summarize(run: RunResult, results: list[QuestionResult]) -> None:
    """Fill accuracy, F1 and answer time from per-question results."""
    run.questions = results
    run.total = len(results)
    run.correct = sum(r.correct for r in results)
    if results:
        run.accuracy = run.correct / run.total
        run.f1 = sum(r.f1 for r in results) / run.total
        run.answer_seconds_per_question = sum(r.seconds for r in results) / run.total


def forgetting_ratio(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or before <= 0:
        return None
    return (before - after) / before


def general_accuracy(items: Sequence[GeneralItem], replies: Sequence[str]) -> tuple[float | None, list[bool]]:
    """The share of `items` whose reply (in order) holds an accepted answer, and which ones do."""
    flags = [is_correct(reply, item.answers) for item, reply in zip(items, replies, strict=True)]
    return (sum(flags) / len(flags) if flags else None), flags


def document_text(docs: Sequence[Document]) -> str:
    return "\n\n".join(f"# {d.title}\n{d.text.strip()}" if len(docs) > 1 else d.text for d in docs)


class BaseModelAnswers:
    """The base model answering closed-book, or with given documents in the prompt (the two references).

    Answers are decoded in batches; each question is charged the batch's time divided by its size.
    """

    def __init__(self, lm: LoadedModel, max_new_tokens: int, batch_size: int = 8) -> None:
        self.lm = lm
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    def replies(self, conversations: Sequence[list[Message]]) -> tuple[list[str], float]:
        start = time.perf_counter()
        replies = generate_batch(self.lm, conversations, self.max_new_tokens, self.batch_size)
        return replies, (time.perf_counter() - start) / max(1, len(conversations))

    def closed_book(self, prompts: Sequence[str]) -> list[str]:
        return self.replies([question_messages(p) for p in prompts])[0]


def score_reply(item: QAItem, reply: str, seconds: float, cited: Sequence[str] = ()) -> QuestionResult:
    return QuestionResult(
        item.question,
        list(item.docs),
        list(item.answers),
        reply,
        is_correct(reply, item.answers),
        token_f1(reply, item.answers),
        seconds,
        list(cited),
    )


def score_replies(items: Sequence[QAItem], replies: Sequence[str], seconds_each: float) -> list[QuestionResult]:
    return [score_reply(item, reply, seconds_each) for item, reply in zip(items, replies, strict=True)]


def select_general(
    base: BaseModelAnswers,
    items: Sequence[GeneralItem],
    knowledge_max: int | None = None,
    reading_max: int | None = None,
) -> tuple[list[GeneralItem], float | None]:
    """The general-knowledge questions the base model gets right (the first `knowledge_max` of them) and
    the first `reading_max` reading items.

    Returns the kept items and the base model's accuracy on them (the "before" of forgetting). Knowledge
    questions are tried a batch at a time, so a small cap costs only a batch or two.
    """
    knowledge = [item for item in items if item.kind == "knowledge"]
    reading = [item for item in items if item.kind == "reading"][:reading_max]
    known: list[GeneralItem] = []
    for start in range(0, len(knowledge), base.batch_size):
        if knowledge_max is not None and len(known) >= knowledge_max:
            break
        batch = knowledge[start : start + base.batch_size]
        replies = base.closed_book([item.prompt for item in batch])
        known += [item for item, reply in zip(batch, replies, strict=True) if is_correct(reply, item.answers)]
    known = known[:knowledge_max]
    replies = base.closed_book([item.prompt for item in reading])
    reading_right = sum(is_correct(reply, item.answers) for item, reply in zip(reading, replies, strict=True))
    kept = known + reading
    return kept, ((len(known) + reading_right) / len(kept) if kept else None)


def weights_checksum(model: torch.nn.Module) -> tuple[int, float]:
    """Parameter count and sum: a learner's reset must bring the base model back exactly."""
    with torch.no_grad():
        params = list(model.parameters())
        return sum(p.numel() for p in params), float(sum(p.double().sum() for p in params))


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_learner(
    name: str,
    factory: LearnerFactory,
    docs: Mapping[str, Document],
    items: Sequence[QAItem],
    general: Sequence[GeneralItem],
    general_before: float | None,
    progress: Progress,
) -> RunResult:
    """Learn all documents, answer every question closed-book, measure size and forgetting, then reset."""
    run = RunResult(name, "learner", general_before=general_before if general else None)
    progress(f"{name}: learning {len(docs)} documents")
    learner = factory(name)
    try:
        start = time.perf_counter()
        report = learner.learn(list(docs.values()))
        run.learn_seconds_per_doc = (time.perf_counter() - start) / max(1, len(docs))
        run.details["learn_report"] = {"tokens": report.tokens, "seconds": report.seconds, **report.details}
        progress(f"{name}: answering {len(items)} questions")
        summarize(run, score(items, learner, {d.id: n for n, d in docs.items()}))
        with tempfile.TemporaryDirectory(prefix="loracle-eval-") as tmp:
            target = Path(tmp) / name
            learner.save(target)
            run.bytes_on_disk = folder_bytes(target)
        if general:
            progress(f"{name}: general set after learning ({len(general)} items)")
            replies = [learner.answer(item.prompt).text for item in general]
            run.general_after, right = general_accuracy(general, replies)
            run.forgetting_ratio = forgetting_ratio(general_before, run.general_after)
            run.wrong_after = [
                {"kind": item.kind, "question": item.question, "answers": list(item.answers), "reply": reply}
                for item, reply, ok in zip(general, replies, right, strict=True)
                if not ok
            ]
    finally:
        learner.reset()
    return run


def run_eval(
    lm: LoadedModel,
    docs: Mapping[str, Document],
    items: Sequence[QAItem],
    learners: Sequence[str],
    factory: LearnerFactory,
    general: Sequence[GeneralItem] = (),
    settings: EvalSettings | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """Floor and ceiling, then each learner in turn on the same documents and questions.

    `docs` maps the names QA items use ("a.md") to documents. A learner that fails is recorded with its
    error and the run goes on to the next one.
    """
    settings = settings or EvalSettings()
    say = progress or (lambda _message: None)
    missing = sorted({name for item in items for name in item.docs if name not in docs})
    if missing:
        raise ValueError(f"questions name documents that were not given: {', '.join(missing)}")
    started = time.perf_counter()
    base = BaseModelAnswers(lm, settings.max_new_tokens)
    result = EvalResult(
        lm.name,
        lm.fingerprint,
        list(docs),
        len(items),
        {},
        {"max_new_tokens": settings.max_new_tokens, "learners": list(learners)},
    )
    say(f"floor: {len(items)} questions closed-book")
    floor = RunResult(FLOOR, "reference")
    summarize(floor, score_replies(items, *base.replies([question_messages(item.question) for item in items])))
    say(f"ceiling: {len(items)} questions with their documents in context")
    ceiling = RunResult(CEILING, "reference")
    conversations = [question_messages(item.question, document_text([docs[d] for d in item.docs])) for item in items]
    summarize(ceiling, score_replies(items, *base.replies(conversations)))
    result.runs += [floor, ceiling]

    kept: list[GeneralItem] = []
    before: float | None = None
    if settings.general and general:
        say(f"general set: selecting from {len(general)} items with the base model")
        kept, before = select_general(base, general, settings.general_knowledge_max, settings.general_reading_max)
        floor.general_before = floor.general_after = before
        floor.forgetting_ratio = forgetting_ratio(before, before)
    result.general = {
        "offered": len(general) if settings.general else 0,
        "knowledge_kept": sum(g.kind == "knowledge" for g in kept),
        "reading_kept": sum(g.kind == "reading" for g in kept),
        "base_accuracy": before,
    }
    baseline = weights_checksum(lm.model)
    for name in learners:
        try:
            run = run_learner(name, factory, docs, items, kept, before, say)
        except Exception as exc:  # one failing learner must not lose the others' results
            run = RunResult(name, "learner", error=f"{type(exc).__name__}: {exc}")
        if run.questions:
            right = [q.correct for q in run.questions]
            run.ceiling_interval = ratio_interval(right, [q.correct for q in ceiling.questions])
        restored = weights_checksum(lm.model) == baseline
        run.details["base_restored_after_reset"] = restored
        if not restored and run.error is None:
            run.error = "reset() did not restore the base model; later rows may be affected"
        result.runs.append(run)
    result.seconds = time.perf_counter() - started
    return result
