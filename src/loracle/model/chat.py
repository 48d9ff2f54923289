"""Turn chat messages into token ids with the tokenizer's own chat template (or a plain fallback)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

from transformers import PreTrainedTokenizerBase

DOC_PROMPT = "Read the document, then answer the question.\n\nDocument:\n{doc}\n\nQuestion: {question}"


class Message(TypedDict):
    role: str
    content: str


def question_messages(question: str, document: str | None = None, system: str | None = None) -> list[Message]:
    """The messages for one question, closed-book or with a document in context."""
    messages: list[Message] = []
    if system:
        messages.append({"role": "system", "content": system})
    content = DOC_PROMPT.format(doc=document.strip(), question=question) if document else question
    messages.append({"role": "user", "content": content})
    return messages


def encode_chat(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message]) -> list[int]:
    """Token ids for `messages` followed by the assistant's turn opener."""
    if tokenizer.chat_template:
        encoded = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
        ids = encoded["input_ids"] if isinstance(encoded, dict) or hasattr(encoded, "keys") else encoded
        return list(ids)
    text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages) + "Assistant:"
    return tokenizer.encode(text)


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Ids that end an assistant turn: eos plus the chat template's end-of-turn token, if any."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    for token in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "</s>"):
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.add(tid)
    return ids
