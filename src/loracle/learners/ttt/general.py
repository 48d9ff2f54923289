"""General questions an adapter must leave alone, answered as the base model answers them.

Each adapter trains on these beside its document's questions, with the base model's own greedy reply as the
target and its own distribution as the teacher: the adapter learns to add nothing where the base model is
already right, so applied to a question about anything else it leaves the answer alone. The prompts are
bundled (loracle/data/general_prompts.txt, disjoint from the general sets the eval harness measures
forgetting on).
"""

from __future__ import annotations

from importlib import resources

import torch

from loracle.learners.ttt.selfstudy import StudyExample, replied_examples
from loracle.model import LoadedModel, encode_chat, question_messages
from loracle.stored import Tensors, stored

GENERAL_PROMPTS_FILE = "general_prompts.txt"
#: the doc_id of every general example (training keeps their cached states across documents)
GENERAL_DOC = "general"
#: the longest base reply kept as a target, in tokens
REPLY_TOKENS = 48


def bundled_lines(name: str) -> list[str]:
    """The non-empty, non-comment lines of a bundled data file."""
    text = resources.files("loracle").joinpath("data", name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def general_prompts() -> list[str]:
    """The bundled general questions and requests."""
    return bundled_lines(GENERAL_PROMPTS_FILE)


def general_examples(lm: LoadedModel, count: int, top_k: int = 16) -> list[StudyExample]:
    """The first `count` general prompts, each with the base model's reply and distribution as its target
    (one batched decode of every prompt, once per base model, kept under <cache>/ttt/: loracle/stored.py)."""
    prompts = general_prompts()
    ids = [encode_chat(lm.tokenizer, question_messages(p)) for p in prompts]

    def build() -> Tensors:
        made = replied_examples(lm, ids, ids, REPLY_TOKENS, top_k, GENERAL_DOC)
        tensors: Tensors = {}
        for n, example in enumerate(made):  # add_teacher set every example's teacher
            tensors |= {f"{n}.answer": torch.tensor(example.answer), f"{n}.ids": example.teacher_ids}
            tensors[f"{n}.logp"] = example.teacher_logp
        return tensors

    tensors = stored("ttt", "general", f"{lm.fingerprint}|{prompts}|{REPLY_TOKENS}|{top_k}", build)
    return [
        StudyExample(
            GENERAL_DOC, ids[n], tensors[f"{n}.answer"].tolist(), tensors[f"{n}.ids"], tensors[f"{n}.logp"], prompts[n]
        )
        for n in range(min(count, len(prompts)))
    ]
