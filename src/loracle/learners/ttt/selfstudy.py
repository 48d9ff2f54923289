"""Self-study: training pairs about a document that the base model writes itself.

Recitation pairs (always): for every passage, cues -> the passage word for word. The cues are the
questions the model writes about each sentence (a few-shot prompt, the passage in front of it), the
opening words of each sentence, and the title. A 135M model does not turn a few self-written questions
into answers to differently worded ones, but it does learn to recite what it studied when cued, and
answering then reads its own recitation (recitation-augmented answering, Sun et al., ICLR 2023).

Question-answer pairs (`qa_pairs`): each question is also answered by the model with the passage in
context, kept only when the answer is supported by the passage (its content words occur there), and by
the source sentence itself; the teacher's in-context top-k distribution over the answer tokens is kept,
so training can match it (context distillation). They cost a generation per question and a teacher
pass, so they are off by default (docs/experiments/ttt.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from loracle.documents import Document
from loracle.learners.ttt.upper import right_padded
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
_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "from",
        "by",
        "with",
        "and",
        "or",
        "but",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "as",
        "which",
        "who",
        "whom",
        "what",
        "when",
        "where",
        "why",
        "how",
        "does",
        "did",
        "do",
        "has",
        "have",
        "had",
        "not",
        "no",
    ]
)


@dataclass
class StudyExample:
    """One training pair: a closed-book chat prompt and the answer the model should give to it."""

    doc_id: str
    prompt: list[int]
    answer: list[int]
    teacher_ids: torch.Tensor | None = None  # [len(answer), k] top-k token ids with the document in context
    teacher_logp: torch.Tensor | None = None  # [len(answer), k] their log-probabilities
    cue: str = ""  # the question or cue inside the prompt, as text (what a question is routed by)


RECALL_PROMPT = "Recite, word for word, the passage you studied that answers this question: {question}"


def recall_messages(question: str) -> list[dict[str, str]]:
    """The closed-book prompt that asks the model to recite what it learned about `question`."""
    return [{"role": "user", "content": RECALL_PROMPT.format(question=question)}]


def recitation_fits(question: str, recitation: str, share: float = 0.5) -> bool:
    """Whether a recitation is about the question: at least `share` of the question's content words occur in
    it. A question about something never studied (general knowledge, a paragraph given in the prompt)
    gets an unrelated recitation, which is then ignored."""
    asked = content_words(question)
    return bool(asked) and len(asked & content_words(recitation)) / len(asked) >= share


def sentences(passage: str, min_words: int = 4) -> list[str]:
    """The passage's sentences (headings and fragments under `min_words` words are dropped)."""
    return split_sentences(without_headings(passage), min_words)


def content_words(text: str) -> set[str]:
    return {w for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOPWORDS}


def supported(answer: str, passage: str, question: str) -> bool:
    """The answer adds something beyond the question, and what it adds occurs in the passage."""
    new = content_words(answer) - content_words(question)
    if not new:
        return False
    return len(new & content_words(passage)) / len(new) >= 0.75


def _clean_question(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = re.sub(r"^(question|q)\s*[:.]\s*", "", line, flags=re.IGNORECASE).strip()
    end = line.find("?")
    return line[: end + 1] if end >= 0 else ""


def _questions(lm: LoadedModel, title: str, found: Sequence[str]) -> list[tuple[str, str]]:
    """(sentence, question) pairs the model wrote with QUESTION_PROMPT, without duplicates (one batch: the
    few-shot block is prefilled once)."""
    prompts = [lm.tokenizer.encode(QUESTION_PROMPT.format(title=title, sentence=s)) for s in found]
    written = greedy_batch(lm, prompts, 24, one_line=True)  # a question is its first line
    pairs: dict[str, str] = {}
    for sentence, text in zip(found, written, strict=True):
        question = _clean_question(text)
        if question:
            pairs.setdefault(question, sentence)
    return [(s, q) for q, s in pairs.items()]


def answer_ids(lm: LoadedModel, text: str) -> list[int]:
    """The tokens of an assistant answer, ended by the end-of-turn token."""
    end = lm.tokenizer.eos_token_id
    return lm.tokenizer.encode(text, add_special_tokens=False) + ([end] if end is not None else [])


def title_cue(title: str) -> str:
    """The cue that names only the document: trained on every passage of it, so the one passage of a short one."""
    return f"What does the document about {title} say?"


def cues(title: str, passage: str, questions: Sequence[str]) -> list[str]:
    """What should make the model recite `passage`: its title, its questions and each sentence's opening."""
    openings = [" ".join(s.split()[:8]) for s in sentences(passage)]
    return list(dict.fromkeys([title_cue(title), *questions, *openings]))


def study_examples(
    lm: LoadedModel,
    doc: Document,
    *,
    passage_tokens: int = 256,
    max_questions: int = 16,
    answer_tokens: int = 40,
    top_k: int = 16,
    qa_pairs: bool = False,
) -> list[StudyExample]:
    """Self-written training pairs about `doc` (see the module docstring)."""
    examples: list[StudyExample] = []
    pairs: list[tuple[str, str, str]] = []  # (passage, question, answer text)
    for chunk in chunk_document(doc, passage_tokens):
        passage = chunk.text
        asked = _questions(lm, doc.title, sentences(passage)[:max_questions])
        recital = answer_ids(lm, passage)
        examples += [
            StudyExample(doc.id, encode_chat(lm.tokenizer, recall_messages(cue)), recital, cue=cue)
            for cue in cues(doc.title, passage, [q for _, q in asked])
        ]
        if not qa_pairs:
            continue
        replies = greedy_batch(
            lm, [encode_chat(lm.tokenizer, question_messages(q, passage)) for _, q in asked], answer_tokens
        )
        for (sentence, question), reply in zip(asked, replies, strict=True):
            if supported(reply, passage, question):
                pairs.append((passage, question, reply))
            pairs.append((passage, question, sentence))
        pairs.append((passage, title_cue(doc.title), passage))
    answered = [
        StudyExample(doc.id, encode_chat(lm.tokenizer, question_messages(q)), answer_ids(lm, a), cue=q)
        for _, q, a in pairs
    ]
    _add_teacher(lm, answered, [encode_chat(lm.tokenizer, question_messages(q, p)) for p, q, _ in pairs], top_k)
    return examples + answered


def _add_teacher(
    lm: LoadedModel, examples: list[StudyExample], contexts: list[list[int]], top_k: int, batch: int = 8
) -> None:
    """The model's top-k next-token distribution over each answer with the passage in context (right-padded
    batches: a causal model's logits for real tokens do not depend on padding after them)."""
    jobs = list(zip(examples, contexts, strict=True))
    with torch.no_grad():  # not inference_mode: these tensors later enter the training loss
        for first in range(0, len(jobs), batch):
            part = jobs[first : first + batch]
            ids, mask = right_padded(lm, [context + example.answer for example, context in part])
            logits = lm.model(input_ids=ids, attention_mask=mask).logits
            for row, (example, context) in enumerate(part):
                answer = logits[row, len(context) - 1 : len(context) - 1 + len(example.answer)].float()
                top = torch.topk(torch.log_softmax(answer, dim=-1), top_k, dim=-1)
                example.teacher_ids, example.teacher_logp = top.indices.cpu(), top.values.cpu()
