"""The prompts a bake trains on: questions the model writes from the instruction, and bundled general prompts.

A small model writes better questions from examples than from an instruction, so each written prompt comes
from a few-shot block that shows the instruction and asks for a question on one of a list of topics (one
greedy decode per topic, all in one batch). The general prompts are the first ones of the bundled set; its
last `HELD_OUT_PROMPTS` are never trained on, so behaviour can be measured on prompts the adapter never saw.
"""

from __future__ import annotations

from loracle.bake.config import HELD_OUT_PROMPTS, BakeConfig
from loracle.bundled import general_prompts
from loracle.learners.ttt.selfstudy import clean_question
from loracle.model import LoadedModel
from loracle.model.batch import greedy_batch

WRITE_PROMPT = (
    "An assistant follows this instruction: {instruction}\n"
    "Write a question a user might ask it about the topic.\n\n"
    "Topic: cooking\nQuestion: How long should I boil an egg?\n\n"
    "Topic: space\nQuestion: Why is the sky dark at night?\n\n"
    "Topic: money\nQuestion: How can I save money each month?\n\n"
    "Topic: {topic}\nQuestion:"
)
TOPICS = (
    "animals", "music", "history", "travel", "health", "sports", "computers", "weather", "books", "gardening",
    "school", "oceans", "cars", "friendship", "art", "mathematics", "food", "jobs", "plants", "movies",
    "languages", "holidays", "the human body", "energy", "cities", "games", "chemistry", "birds", "sleep",
    "rivers", "clothes", "inventions", "mountains", "pets", "painting", "trains", "coffee", "the moon", "insects",
    "family",
)  # fmt: skip


def written_prompts(lm: LoadedModel, instruction: str, count: int) -> list[str]:
    """Up to `count` distinct questions the model writes for an assistant given `instruction`, one per topic."""
    if count <= 0:
        return []
    topics = [TOPICS[i % len(TOPICS)] for i in range(count)]
    jobs = [lm.tokenizer.encode(WRITE_PROMPT.format(instruction=instruction, topic=t)) for t in topics]
    written = (clean_question(text) for text in greedy_batch(lm, jobs, 32, one_line=True))
    return list(dict.fromkeys(q for q in written if q))


def held_out_prompts() -> list[str]:
    """The bundled general prompts no bake trains on."""
    return general_prompts()[-HELD_OUT_PROMPTS:]


def training_prompts(lm: LoadedModel, config: BakeConfig) -> list[str]:
    """What a bake trains on: the written prompts, then the first `config.general_prompts` general ones (none of
    the held-out prompts, even if the model wrote one of them)."""
    held_out = set(held_out_prompts())
    general = general_prompts()[: config.general_prompts]
    written = written_prompts(lm, config.instruction, config.written_prompts)
    return list(dict.fromkeys(p for p in [*written, *general] if p not in held_out))
