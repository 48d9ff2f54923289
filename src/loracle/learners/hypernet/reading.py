"""How the frozen base model reads a document, and the token ids of the teacher's and the student's prompts.

The document is read inside the same prompt the in-context teacher sees ("Read the document, then answer
the question. Document: ..."). The model is causal, so the activations over the document are the same
whether or not a question follows: one forward pass gives the hypernetwork its input and the teacher its
cache, and at use time the hypernetwork sees exactly what it saw in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from loracle.model.chat import DOC_PROMPT, encode_chat, question_messages, stop_token_ids

_SENTINEL = "\u2063LORACLE_DOC\u2063"


@dataclass
class DocPrompt:
    """Token ids of the document prompt around the document: prefix + doc + suffix(question)."""

    prefix: list[int]

    @classmethod
    def for_tokenizer(cls, tokenizer: PreTrainedTokenizerBase) -> DocPrompt:
        return cls(_render_split(tokenizer, "?")[0])

    def suffix(self, tokenizer: PreTrainedTokenizerBase, question: str) -> list[int]:
        return _render_split(tokenizer, question)[1]


def _render_split(tokenizer: PreTrainedTokenizerBase, question: str) -> tuple[list[int], list[int]]:
    content = DOC_PROMPT.format(doc=_SENTINEL, question=question)
    messages = [{"role": "user", "content": content}]
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    else:
        text = f"User: {content}\nAssistant:"
    before, after = text.split(_SENTINEL)
    encode = lambda s: tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
    return encode(before), encode(after)


def doc_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return tokenizer.encode(text.strip(), add_special_tokens=False)


def chunk_ids(ids: Sequence[int], chunk_tokens: int) -> list[list[int]]:
    """Split a document's ids into chunks of at most `chunk_tokens` (the last one may be shorter; none if empty)."""
    return [list(ids[i : i + chunk_tokens]) for i in range(0, len(ids), chunk_tokens)]


def answer_ids(tokenizer: PreTrainedTokenizerBase, answer: str) -> list[int]:
    """The answer's ids followed by the end-of-turn token, so the adapter also learns to stop."""
    end = sorted(stop_token_ids(tokenizer))
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    stop = im_end if isinstance(im_end, int) and im_end in end else (end[0] if end else None)
    ids = tokenizer.encode(answer, add_special_tokens=False)
    return ids + ([stop] if stop is not None else [])


def student_prompt(tokenizer: PreTrainedTokenizerBase, question: str) -> list[int]:
    """The closed-book prompt: the question alone, as `loracle ask` would send it."""
    return encode_chat(tokenizer, question_messages(question))


@dataclass
class Reading:
    """What the base model's read of one batch of chunks gives the hypernetwork."""

    hidden: torch.Tensor  # [batch, layers, tokens, hidden]: the input of each decoder layer
    mask: torch.Tensor  # [batch, tokens] True on document tokens


def read_chunks(model: torch.nn.Module, prompt: DocPrompt, chunks: Sequence[Sequence[int]]) -> Reading:
    """Run the frozen decoder (no LM head) over prefix + chunk for each chunk, batched with right padding."""
    decoder = getattr(model, model.base_model_prefix)
    device = next(model.parameters()).device
    width = len(prompt.prefix) + max(len(c) for c in chunks)
    ids = torch.zeros(len(chunks), width, dtype=torch.long, device=device)
    attention = torch.zeros(len(chunks), width, dtype=torch.long, device=device)
    doc_mask = torch.zeros(len(chunks), width, dtype=torch.bool, device=device)
    start = len(prompt.prefix)
    for row, chunk in enumerate(chunks):
        seq = prompt.prefix + list(chunk)
        ids[row, : len(seq)] = torch.tensor(seq, device=device)
        attention[row, : len(seq)] = 1
        doc_mask[row, start : len(seq)] = True
    with torch.no_grad():
        out = decoder(input_ids=ids, attention_mask=attention, output_hidden_states=True, use_cache=False)
    layers = model.config.num_hidden_layers
    hidden = torch.stack(out.hidden_states[:layers], dim=1)
    return Reading(hidden=hidden[:, :, start:], mask=doc_mask[:, start:])
