"""Self-study: the questions about a document its adapter is trained to answer, and the answers.

The answer to every question about a sentence is that sentence, its leading pronoun resolved to the title
("It was founded in 1987." -> "Kestrel Observatory was founded in 1987."): a short reply that holds the
fact, is true to the source by construction, and needs no writer (a 135M model's own answers and paraphrases
are too often wrong to train on). What varies is how the question is put, since a user's wording is unknown:
- questions the model writes about the sentence, from a few-shot prompt (QUESTION_PROMPT);
- answer-aware questions: the model writes a question whose answer is one of the sentence's names, numbers
  or dates (ANSWER_AWARE_PROMPT), so the facts in the middle of a sentence get asked about too;
- echo questions: the sentence with one of those spans replaced by a question word, by rule;
- keyword cues: the title and one to three of the sentence's content words, as a terse query;
- the sentence's opening words.
Each answer also carries the base model's top-k distribution over it with the passage in the prompt, so
training can distil the in-context answer (context distillation) as well as fit the sentence.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from loracle.documents import Document
from loracle.learners.ttt.upper import final_hidden
from loracle.model import LoadedModel, encode_chat, question_messages
from loracle.model.batch import greedy_batch
from loracle.sources.chunking import chunk_document
from loracle.sources.sentences import split_sentences, without_headings

#: the few-shot completion prompt the model writes questions with (a small model writes far better questions
#: from examples than from an instruction)
QUESTION_PROMPT = (
    "Write a question whose answer is in the text.\n\n"
    "Text: The Eiffel Tower was finished in 1889 for the World's Fair in Paris.\n"
    "Question: When was the Eiffel Tower finished?\n\n"
    "Text: Marie Curie, who was born in Warsaw, won two Nobel Prizes.\nQuestion: Where was Marie Curie born?\n\n"
    "Text: The Amazon river carries more water than any other river.\n"
    "Question: Which river carries the most water?\n\n"
    "Text ({title}): {sentence}\nQuestion:"
)
#: the few-shot prompt for a question whose answer is a given span of the sentence
ANSWER_AWARE_PROMPT = (
    "Write a question about the text whose answer is the given answer.\n\n"
    "Text: The Eiffel Tower was finished in 1889 for the World's Fair in Paris.\nAnswer: 1889\n"
    "Question: When was the Eiffel Tower finished?\n\n"
    "Text: Marie Curie, who was born in Warsaw, won two Nobel Prizes.\nAnswer: Warsaw\n"
    "Question: Where was Marie Curie born?\n\n"
    "Text: The Amazon river carries more water than any other river.\nAnswer: The Amazon\n"
    "Question: Which river carries the most water?\n\n"
    "Text: The museum keeps a collection of 40 silver spoons.\nAnswer: silver spoons\n"
    "Question: What does the museum keep a collection of?\n\n"
    "Text ({title}): {sentence}\nAnswer: {answer}\nQuestion:"
)
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_MONTH = "(?:" + "|".join(_MONTHS) + ")"
#: a date, a number, or a run of capitalised words (joined by "of", "the", "de"): what a question asks for
_SPAN = re.compile(
    r"\b(\d{1,2} " + _MONTH + r" \d{3,4}|" + _MONTH + r" \d{3,4}|\d[\d,.]*\d|\d|"
    r"[A-Z][\w'-]+(?: (?:of |the |de )?[A-Z][\w'-]+)*)"
)
_YEAR = re.compile(r"^(1[0-9]{3}|20[0-9]{2})$")
_NUMBER = re.compile(r"^\d[\d,.]*$")
#: a sentence's leading reference to its document's subject, resolved to the title
_SUBJECT = re.compile(
    r"^(It|He|She|They|Its|His|Her|Their|The (?:town|city|village|company|society|institute|guild|foundation"
    r"|bridge|island|islands|dam|station|school|museum|observatory|festival|river|lake|group|band|club))\b"
)
_POSSESSIVES = frozenset({"Its", "His", "Her", "Their"})
_CUE_WORD = re.compile(r"[\w'-]+", re.UNICODE)
_STOPWORDS = frozenset(
    """
    a an the of in on at to for from by with and or but is are was were be been it its this that these those as
    which who whom what when where why how does did do has have had not no there most about
    """.split()  # noqa: SIM905
)


@dataclass
class StudyExample:
    """One training pair: a closed-book chat prompt and the answer the model should give to it."""

    doc_id: str
    prompt: list[int]
    answer: list[int]
    teacher_ids: torch.Tensor | None = None  # [len(answer), k] top-k token ids of the teacher
    teacher_logp: torch.Tensor | None = None  # [len(answer), k] their log-probabilities
    cue: str = ""  # the question inside the prompt, as text (what a question is routed by)


@dataclass(frozen=True)
class StudyPlan:
    """How many questions of each kind a sentence gets (TTTConfig holds the values)."""

    max_sentences: int = 16  # per passage
    answer_spans: int = 2  # spans per sentence asked about (answer-aware and echo questions)
    keyword_cues: int = 3  # keyword cues per sentence
    openings: bool = True
    passage_tokens: int = 256
    teacher_top_k: int = 16


def sentences(passage: str, min_words: int = 4) -> list[str]:
    """The passage's sentences (headings and fragments under `min_words` words are dropped)."""
    return split_sentences(without_headings(passage), min_words)


def resolved(sentence: str, title: str) -> str:
    """`sentence` with a leading pronoun or "The town"-like reference replaced by the document's title, so the
    answer names what it is about."""
    found = _SUBJECT.match(sentence)
    if not found:
        return sentence
    subject = f"{title}'s" if found.group(0) in _POSSESSIVES else title
    return subject + sentence[found.end() :]


def answer_spans(sentence: str, title: str) -> list[str]:
    """The names, numbers and dates in `sentence` a question could ask for (not the title, not a sentence's
    capitalised first word alone)."""
    found: list[str] = []
    for match in _SPAN.finditer(sentence):
        text = match.group(0)
        if match.start() == 0 and not text[0].isdigit() and " " not in text:
            continue
        if text.lower().removeprefix("the ") in title.lower() or text in found:
            continue
        found.append(text)
    return found


def question_word(span: str) -> str:
    """The question word that asks for `span`."""
    if _YEAR.match(span.split()[0]) or any(month in span for month in _MONTHS):
        return "when"
    if _NUMBER.match(span.split()[0]):
        return "how many"
    return "who or what"


def echo_questions(sentence: str, title: str, max_spans: int) -> list[str]:
    """`sentence` asked back: each of its first `max_spans` spans replaced by its question word."""
    return [
        sentence.replace(span, question_word(span), 1).rstrip(". ") + "?"
        for span in answer_spans(sentence, title)[:max_spans]
    ]


def keyword_cues(sentence: str, title: str, count: int, rng: random.Random) -> list[str]:
    """`count` terse queries: the title and one to three of the sentence's content words."""
    picked = [w for w in _CUE_WORD.findall(sentence) if w.lower() not in _STOPWORDS and w.lower() not in title.lower()]
    if not picked:
        return []
    return [f"{title}: {' '.join(rng.sample(picked, min(len(picked), rng.choice((1, 2, 3)))))}?" for _ in range(count)]


def clean_question(text: str) -> str:
    """The first line of what the model wrote, up to its question mark ("" when it wrote no question)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = re.sub(r"^(question|q)\s*[:.]\s*", "", line, flags=re.IGNORECASE).strip()
    end = line.find("?")
    return line[: end + 1] if end >= 0 else ""


def written_questions(lm: LoadedModel, title: str, found: Sequence[str], spans: int) -> list[tuple[str, str]]:
    """(sentence, question) pairs the model wrote: one open question per sentence, and one per answer span
    that does not give its answer away (one batch per prompt, so each few-shot block is prefilled once)."""
    jobs: list[tuple[str, str]] = [(s, QUESTION_PROMPT.format(title=title, sentence=s)) for s in found]
    answers: list[str] = [""] * len(jobs)
    for sentence in found:
        for span in answer_spans(sentence, title)[:spans]:
            jobs.append((sentence, ANSWER_AWARE_PROMPT.format(title=title, sentence=sentence, answer=span)))
            answers.append(span)
    open_count = len(found)
    encoded = [lm.tokenizer.encode(prompt) for _, prompt in jobs]
    written = greedy_batch(lm, encoded[:open_count], 24, one_line=True)
    written += greedy_batch(lm, encoded[open_count:], 24, one_line=True)
    pairs = []
    for (sentence, _), span, text in zip(jobs, answers, written, strict=True):
        question = clean_question(text)
        if question and (not span or span.lower() not in question.lower()):
            pairs.append((sentence, question))
    return pairs


def answer_ids(lm: LoadedModel, text: str) -> list[int]:
    """The tokens of an assistant answer, ended by the end-of-turn token."""
    end = lm.tokenizer.eos_token_id
    return lm.tokenizer.encode(text, add_special_tokens=False) + ([end] if end is not None else [])


def study_questions(lm: LoadedModel, doc: Document, plan: StudyPlan | None = None) -> dict[str, tuple[str, str]]:
    """Every question asked about `doc` (see the module docstring) -> the passage it was asked from and the
    sentence that answers it; the first asker of a question wins."""
    plan = plan or StudyPlan()
    rng = random.Random(doc.id)
    asked: dict[str, tuple[str, str]] = {}
    for chunk in chunk_document(doc, plan.passage_tokens):
        passage = chunk.text
        found = sentences(passage)[: plan.max_sentences]
        for sentence, question in written_questions(lm, doc.title, found, plan.answer_spans):
            asked.setdefault(question, (passage, sentence))
        for sentence in found:
            subject_named = resolved(sentence, doc.title)
            ruled = echo_questions(subject_named, doc.title, plan.answer_spans)
            ruled += keyword_cues(subject_named, doc.title, plan.keyword_cues, rng)
            if plan.openings:
                ruled.append(" ".join(sentence.split()[:8]))
            for question in ruled:
                asked.setdefault(question, (passage, sentence))
    return asked


def study_examples(lm: LoadedModel, doc: Document, plan: StudyPlan | None = None) -> list[StudyExample]:
    """The questions about `doc` (`study_questions`), each answered by its sentence, with the teacher's
    distribution over that answer when the passage is in the prompt."""
    plan = plan or StudyPlan()
    asked = study_questions(lm, doc, plan)
    examples = [
        StudyExample(doc.id, encode_chat(lm.tokenizer, question_messages(q)), answer_ids(lm, answer), cue=q)
        for q, answer in ((q, resolved(s, doc.title)) for q, (_, s) in asked.items())
    ]
    contexts = [encode_chat(lm.tokenizer, question_messages(q, p)) for q, (p, _) in asked.items()]
    add_teacher(lm, examples, contexts, plan.teacher_top_k)
    return examples


def replied_examples(
    lm: LoadedModel,
    prompts: Sequence[list[int]],
    teacher_prompts: Sequence[list[int]],
    reply_tokens: int,
    top_k: int,
    doc_id: str,
) -> list[StudyExample]:
    """Each of `prompts` answered as the teacher answers: the model's greedy reply (at most `reply_tokens`) after
    the teacher's prompt of the same index, with the teacher's top-k distribution over it (one batched decode)."""
    replies = greedy_batch(lm, teacher_prompts, reply_tokens)
    pairs = zip(prompts, replies, strict=True)
    made = [StudyExample(doc_id, list(p), answer_ids(lm, r)[:reply_tokens]) for p, r in pairs]
    add_teacher(lm, made, teacher_prompts, top_k)
    return made


def add_teacher(
    lm: LoadedModel, examples: Sequence[StudyExample], contexts: Sequence[list[int]], top_k: int, batch: int = 64
) -> None:
    """The model's top-k next-token distribution over each answer after its context. Rows are batched in
    sorted order, so those reading the same passage share a batch and run it once (upper.final_hidden), and
    the output head runs only where an answer token is predicted."""
    head = lm.model.get_output_embeddings()
    order = sorted(range(len(examples)), key=lambda i: contexts[i])
    with torch.no_grad():  # not inference_mode: these tensors later enter the training loss
        for first in range(0, len(order), batch):
            part = order[first : first + batch]
            hidden = final_hidden(lm, [contexts[i] + examples[i].answer for i in part])
            for row, i in enumerate(part):
                example, begin = examples[i], len(contexts[i]) - 1
                logits = head(hidden[row, begin : begin + len(example.answer)]).float()
                top = torch.topk(torch.log_softmax(logits, dim=-1), top_k, dim=-1)
                example.teacher_ids, example.teacher_logp = top.indices.cpu(), top.values.cpu()
