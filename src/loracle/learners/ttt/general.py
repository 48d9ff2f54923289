"""General questions an adapter must leave alone, answered as the base model answers them.

Each adapter trains on these beside its document's questions, with the base model's own greedy reply as the
target and its own distribution as the teacher: the adapter learns to add nothing where the base model is
already right, so applied to a question about anything else it leaves the answer alone. The prompts are
bundled (loracle/data/general_prompts.txt, disjoint from the general sets the eval harness measures
forgetting on); the reading prompts (a paragraph and a question about it, in the prompt) are generated.
"""

from __future__ import annotations

import random

import torch

from loracle.bundled import general_prompts
from loracle.learners.hypernet.data import fictional_sample
from loracle.learners.ttt.selfstudy import StudyExample, replied_examples
from loracle.model import LoadedModel, Message, encode_chat, question_messages
from loracle.stored import Tensors, stored

#: the doc_id of every general example (training keeps their cached states across documents)
GENERAL_DOC = "general"
#: the longest base reply kept as a target, in tokens
REPLY_TOKENS = 48
#: the seed of the generated passages the reading examples read
READING_SEED = "ttt-general-reading"


def general_examples(lm: LoadedModel, count: int, top_k: int = 16) -> list[StudyExample]:
    """The first `count` general prompts, each with the base model's reply and distribution as its target."""
    prompts = general_prompts()[:count]
    return replied_as_base(lm, "general", prompts, [question_messages(p) for p in prompts], top_k)


def reading_examples(lm: LoadedModel, count: int, top_k: int = 16) -> list[StudyExample]:
    """`count` reading prompts, each a generated fictional paragraph and a question about it put in the prompt
    as loracle puts a document in context, with the base model's reply and distribution as the target: so an
    applied adapter leaves the model's reading of whatever document is in its prompt alone. Generated (seeded
    by READING_SEED), so no evaluation set is read."""
    asked = []
    for n in range(count):  # prompt n is the same whatever the count
        rng = random.Random(f"{READING_SEED}/{n}")
        sample = fictional_sample(rng)
        asked.append((rng.choice(sample.qa)[0], sample.text))
    cues = [question for question, _ in asked]
    return replied_as_base(lm, "reading", cues, [question_messages(q, passage) for q, passage in asked], top_k)


def replied_as_base(
    lm: LoadedModel, name: str, cues: list[str], messages: list[list[Message]], top_k: int
) -> list[StudyExample]:
    """Each of `messages` with the base model's greedy reply (at most REPLY_TOKENS) and its top-k distribution
    over it as the target (one batched decode, once per base model: kept under <cache>/ttt/, loracle/stored.py)."""
    ids = [encode_chat(lm.tokenizer, m) for m in messages]

    def build() -> Tensors:
        made = replied_examples(lm, ids, ids, REPLY_TOKENS, top_k, GENERAL_DOC)
        tensors: Tensors = {}
        for n, example in enumerate(made):  # add_teacher set every example's teacher
            tensors |= {f"{n}.answer": torch.tensor(example.answer), f"{n}.ids": example.teacher_ids}
            tensors[f"{n}.logp"] = example.teacher_logp
        return tensors

    tensors = stored("ttt", name, f"{lm.fingerprint}|{ids}|{REPLY_TOKENS}|{top_k}", build) if ids else {}
    return [
        StudyExample(
            GENERAL_DOC, ids[n], tensors[f"{n}.answer"].tolist(), tensors[f"{n}.ids"], tensors[f"{n}.logp"], cues[n]
        )
        for n in range(len(ids))
    ]
