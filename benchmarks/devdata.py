"""Dev data for ablations: the documents a learner learns and the questions it is asked, never an evaluation set.

Two sources. Generated: fictional documents from the hypernetwork's data generator (learners.hypernet.data),
seeded by strings no evaluation uses, with questions about them, questions that need two of them (right only
if every part is answered) and, optionally, questions about documents that are not learned (right only if the
reply is the base model's own: a learner should leave them alone), and general-knowledge questions written for
dev (data/dev_general.jsonl; right when the reply holds an answer). SQuAD: paragraphs of the shared SQuAD file
that the learners benchmark does not learn and the forgetting set does not paste (`dev_paragraphs`).
Each kind is built from a data file's `[[data]]` table (`dev_set`); the same table gives the same set on
every run.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loracle.documents import Document
from loracle.eval.general import READING_FILE, GeneralItem, data_file, load_general
from loracle.eval.scoring import is_correct
from loracle.eval.squad import SquadParagraph, load_squad, sample_questions
from loracle.learners.hypernet.data import Sample, fictional_sample
from loracle.model.chat import DOC_PROMPT

SQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad2-dev-normans-rhine.json"
#: general-knowledge questions written for choosing settings, disjoint from the eval harness's general sets and
#: from the bundled general prompts adapters train on
DEV_GENERAL = Path(__file__).parent / "data" / "dev_general.jsonl"
#: the SQuAD questions the learners benchmark asks (its --max-questions default); their paragraphs are not dev
BENCHMARK_SQUAD_QUESTIONS = 24


@dataclass(frozen=True)
class DevQuestion:
    """A question and what makes a reply right: every part's accepted answers, or (`unchanged`) the base
    model's own reply, for a question about nothing learned."""

    question: str
    parts: tuple[tuple[str, ...], ...] = ()
    unchanged: bool = False

    def right(self, reply: str, base_reply: str | None = None) -> bool:
        if self.unchanged:
            return reply == base_reply
        return all(is_correct(reply, list(accepted)) for accepted in self.parts)


@dataclass
class DevSet:
    """What one learner learns (`docs`) and is then asked (`questions`)."""

    name: str
    docs: list[Document]
    questions: list[DevQuestion] = field(default_factory=list)


def dev_general(count: int | None = None) -> list[DevQuestion]:
    """The first `count` (all when None) dev general-knowledge questions, right when the reply holds an answer."""
    lines = [json.loads(line) for line in DEV_GENERAL.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [DevQuestion(item["q"], (tuple(item["a"]),)) for item in lines[:count]]


def title_of(text: str) -> str:
    """The entity a generated document is about (its first words up to "is"/"was")."""
    return re.split(r" (?:is|was) ", text, maxsplit=1)[0].removeprefix("The ")


def dev_samples(seed: str, kind: str, count: int, parts: int = 1) -> list[Sample]:
    """`count` generated documents of `parts` paragraphs, seeded "<seed>/<kind>/<i>"."""
    return [fictional_sample(random.Random(f"{seed}/{kind}/{i}"), parts=parts) for i in range(count)]


def generated(
    name: str,
    seed: str,
    documents: int = 8,
    parts: int = 2,
    per_doc: int = 4,
    pairs: int = 0,
    unrelated_documents: int = 0,
    unrelated_per_doc: int = 3,
    reading: int = 0,
    general: int = 0,
) -> DevSet:
    """`documents` generated documents, `per_doc` questions about each, `pairs` questions that ask about two of
    them at once ("...? And ...?"), `unrelated_per_doc` questions about each of `unrelated_documents`
    documents that are not learned, and `reading` questions each with an unlearned paragraph in the prompt (as
    loracle puts a document in context: what an applied adapter must not break) and `general` dev
    general-knowledge questions (`dev_general`)."""
    pick = random.Random(f"{seed}/questions")
    learned = dev_samples(seed, "learned", documents, parts)
    docs = [Document.from_text(s.text, title_of(s.text), doc_id=f"dev-{i}") for i, s in enumerate(learned)]
    questions = [DevQuestion(q, (tuple(a),)) for s in learned for q, a in pick.sample(s.qa, per_doc)]
    for _ in range(pairs):
        i, j = pick.sample(range(len(learned)), 2)
        (q1, a1), (q2, a2) = pick.choice(learned[i].qa), pick.choice(learned[j].qa)
        questions.append(DevQuestion(f"{q1} And {q2[0].lower()}{q2[1:]}", (tuple(a1), tuple(a2))))
    for sample in dev_samples(seed, "unlearned", unrelated_documents, parts):
        questions += [DevQuestion(q, unchanged=True) for q, _ in pick.sample(sample.qa, unrelated_per_doc)]
    for sample in dev_samples(seed, "reading", reading, 1):
        question, accepted = pick.choice(sample.qa)
        questions.append(DevQuestion(DOC_PROMPT.format(doc=sample.text, question=question), (tuple(accepted),)))
    return DevSet(name, docs, questions + dev_general(general))


def read_elsewhere(paragraphs: list[SquadParagraph], *, spare_reading: bool) -> set[str]:
    """The keys of the `paragraphs` that the learners benchmark learns and, with `spare_reading`, of those that
    the bundled general reading set pastes into its prompts."""
    used = {d for item in sample_questions(paragraphs, BENCHMARK_SQUAD_QUESTIONS) for d in item.docs}
    if spare_reading:
        pasted = {" ".join(item.context.split()) for item in load_general(data_file(READING_FILE), "reading")}
        used |= {p.key for p in paragraphs if " ".join(p.context.split()) in pasted}
    return used


def dev_paragraphs(per_doc: int, *, spare_reading: bool = True) -> list[SquadParagraph]:
    """The paragraphs of the shared SQuAD file that no evaluation reads and that have more than `per_doc`
    questions (the first of each is left for other uses)."""
    paragraphs = load_squad(SQUAD)
    used = read_elsewhere(paragraphs, spare_reading=spare_reading)
    return [p for p in paragraphs if p.key not in used and len(p.questions) >= per_doc + 1]


def _asked(paragraph: SquadParagraph, first: int, count: int | None) -> list[DevQuestion]:
    """The paragraph's questions from `first` on, `count` of them (None: all)."""
    last = None if count is None else first + count
    return [DevQuestion(q.question, (tuple(q.answers),)) for q in paragraph.questions[first:last]]


def squad_dev(
    name: str, documents: int | None = None, per_doc: int = 2, first_question: int = 1, questions: int | None = None
) -> DevSet:
    """`documents` dev paragraphs (with more than `per_doc` questions) spread evenly over the pool (all of them
    when None), learned together, each asked `questions` (default `per_doc`; 0: all) of its questions from
    `first_question` on."""
    pool = dev_paragraphs(per_doc, spare_reading=documents is None)
    chosen = pool if documents is None else [pool[int(i * len(pool) / documents)] for i in range(documents)]
    count = per_doc if questions is None else (questions or None)
    asked = [q for p in chosen for q in _asked(p, first_question, count)]
    return DevSet(name, [p.document() for p in chosen], asked)


def squad_unread(name: str, per_doc: int = 2) -> DevSet:
    """The answerable questions of the SQuAD paragraphs that no evaluation, forgetting item or dev set reads,
    learned together with the dev paragraphs as neighbours."""
    paragraphs = load_squad(SQUAD)
    dev = dev_paragraphs(per_doc)
    taken = read_elsewhere(paragraphs, spare_reading=True) | {p.key for p in dev}
    unread = [p for p in paragraphs if p.questions and p.key not in taken]
    questions = [q for p in unread for q in _asked(p, 0, None)]
    return DevSet(name, [p.document() for p in dev + unread], questions)


def squad_reading(name: str, documents: int = 48, per_doc: int = 2) -> DevSet:
    """Reading comprehension beside learned neighbours: of `documents` dev paragraphs (less those the forgetting
    set pastes), the even ones are learned and the odd ones are read, each question asked with its own
    paragraph in the prompt (as the forgetting set words it)."""
    pool = squad_dev("pool", documents, per_doc)
    pasted = {" ".join(item.context.split()) for item in load_general(data_file(READING_FILE), "reading")}
    asked = [
        (doc, pool.questions[i * per_doc : (i + 1) * per_doc])
        for i, doc in enumerate(pool.docs)
        if " ".join(doc.text.split()) not in pasted
    ]
    questions = [
        DevQuestion(GeneralItem("reading", q.question, q.parts[0], doc.text).prompt, q.parts)
        for doc, questions in asked[1::2]
        for q in questions
    ]
    return DevSet(name, [doc for doc, _ in asked[0::2]], questions)


#: the `kind` of a data file's [[data]] table -> what builds that set from the table's other keys
KINDS = {"generated": generated, "squad-dev": squad_dev, "squad-unread": squad_unread, "squad-reading": squad_reading}


def dev_set(table: Mapping[str, Any]) -> DevSet:
    """The dev set a data file's [[data]] table describes (`kind`, `name` and the builder's arguments)."""
    spec = dict(table)
    kind = spec.pop("kind", None)
    if kind not in KINDS:
        raise ValueError(f"data kind {kind!r}: expected one of {', '.join(KINDS)}")
    return KINDS[kind](**spec)
