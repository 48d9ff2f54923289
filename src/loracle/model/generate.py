"""Greedy and sampled decoding with a KV cache, streamed as text pieces.

A hand-written loop (rather than `model.generate`) so that every caller — CLI, server, eval — gets
the same streaming, stop handling and timing, and so the decode path can be optimised in one place.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from loracle.model.chat import Message, encode_chat, stop_token_ids
from loracle.model.loader import LoadedModel


@dataclass
class GenerationConfig:
    max_new_tokens: int = 200
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None
    #: added to the logits of these token ids at every step (used by the context learner's logit bias)
    logit_bias: dict[int, float] = field(default_factory=dict)


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    #: True when the model ended its turn (a stop token), False when the token budget ran out
    stopped: bool = False

    @property
    def decode_tokens_per_s(self) -> float:
        return (self.new_tokens - 1) / self.decode_s if self.decode_s > 0 and self.new_tokens > 1 else 0.0


class TextStream:
    """Iterates text pieces as they are decoded; `stats` is complete once iteration ends."""

    def __init__(self, pieces: Iterator[str], stats: GenerationStats) -> None:
        self._pieces = pieces
        self.stats = stats

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def text(self) -> str:
        return "".join(self._pieces)


def stream_ids(lm: LoadedModel, prompt_ids: Sequence[int], config: GenerationConfig | None = None) -> TextStream:
    """Decode from `prompt_ids`, yielding text pieces as soon as they form complete characters."""
    config = config or GenerationConfig()
    stats = GenerationStats(prompt_tokens=len(prompt_ids))
    return TextStream(_decode(lm, list(prompt_ids), config, stats), stats)


def stream_chat(lm: LoadedModel, messages: Sequence[Message], config: GenerationConfig | None = None) -> TextStream:
    return stream_ids(lm, encode_chat(lm.tokenizer, messages), config)


def generate_chat(lm: LoadedModel, messages: Sequence[Message], config: GenerationConfig | None = None) -> str:
    return stream_chat(lm, messages, config).text().strip()


def _decode(lm: LoadedModel, prompt: list[int], config: GenerationConfig, stats: GenerationStats) -> Iterator[str]:
    model, tokenizer = lm.model, lm.tokenizer
    stops = stop_token_ids(tokenizer)
    generator = torch.Generator().manual_seed(config.seed) if config.seed is not None else None
    bias = _bias_vector(config.logit_bias, model.config.vocab_size, lm.device)
    max_positions = getattr(model.config, "max_position_embeddings", None) or 1 << 30
    budget = max(0, min(config.max_new_tokens, max_positions - len(prompt)))
    generated: list[int] = []
    emitted = ""
    cache = DynamicCache()
    input_ids = torch.tensor([prompt], device=lm.device)
    start = time.perf_counter()
    with torch.inference_mode():
        for step in range(budget):
            out = model(input_ids=input_ids, past_key_values=cache, use_cache=True)
            logits = out.logits[0, -1].float()
            if bias is not None:
                logits = logits + bias
            token = _pick(logits, config, generator)
            now = time.perf_counter()
            if step == 0:
                stats.prefill_s = now - start
            else:
                stats.decode_s = now - start - stats.prefill_s
            stats.new_tokens += 1
            if token in stops:
                stats.stopped = True
                break
            generated.append(token)
            text = tokenizer.decode(generated, skip_special_tokens=True)
            if not text.endswith("\ufffd") and len(text) > len(emitted):
                piece, emitted = text[len(emitted) :], text
                yield piece
            input_ids = torch.tensor([[token]], device=lm.device)


def _bias_vector(bias: dict[int, float], vocab: int, device: torch.device) -> torch.Tensor | None:
    if not bias:
        return None
    vector = torch.zeros(vocab, device=device)
    for tid, value in bias.items():
        if 0 <= tid < vocab:
            vector[tid] += value
    return vector


def _pick(logits: torch.Tensor, config: GenerationConfig, generator: torch.Generator | None) -> int:
    if config.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / config.temperature, dim=-1)
    if config.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < config.top_p
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))
