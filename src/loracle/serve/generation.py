"""Text generation as a sequence of steps for the scheduler: text pieces, then a `Finish` record.

Adds what the OpenAI API needs on top of `stream_ids`: stop strings (text that might be the start of
one is held back until it is clear), a finish reason, token usage, and (when the config asks) each
token's log probabilities as `Tokens`, yielded before the text they make.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from loracle.model.generate import GenerationConfig, TokenLogprob, stream_ids
from loracle.model.loader import LoadedModel


@dataclass(frozen=True)
class Sampling:
    """Decoding defaults for requests that leave them out: 0 = greedy."""

    temperature: float = 0.0
    top_p: float = 1.0


def model_sampling(lm: LoadedModel) -> Sampling:
    """The model's own generation config when it asks for sampling (do_sample), else greedy."""
    config = getattr(lm.model, "generation_config", None)
    if config is None or not getattr(config, "do_sample", False):
        return Sampling()
    temperature, top_p = getattr(config, "temperature", None), getattr(config, "top_p", None)
    return Sampling(
        temperature=float(temperature) if temperature is not None else 1.0,
        top_p=float(top_p) if top_p is not None and 0 < top_p <= 1 else 1.0,
    )


@dataclass
class Finish:
    reason: str  # "stop" (end of turn or a stop string) or "length" (token budget spent)
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Tokens:
    """Log probabilities of the reply's next tokens (GenerationConfig.logprobs), before the text they make."""

    entries: list[TokenLogprob]


def generation_steps(
    lm: LoadedModel,
    prompt_ids: Sequence[int],
    config: GenerationConfig,
    stops: Sequence[str] = (),
    prefix: torch.Tensor | None = None,
) -> Iterator[str | Tokens | Finish]:
    """Yield text pieces as they are decoded (each after the Tokens that made it, when asked), then one Finish.
    `prefix`: a prefix adapter's cache placed before the prompt."""
    stream = stream_ids(lm, prompt_ids, config, prefix)
    stops = [s for s in stops if s]
    held = ""
    hit_stop = False
    pieces = iter(stream)
    logged = stream.stats.token_logprobs
    sent = 0
    try:
        for piece in pieces:
            if len(logged) > sent:
                yield Tokens(logged[sent:])
                sent = len(logged)
            held += piece
            cut = min((i for i in (held.find(s) for s in stops) if i >= 0), default=-1)
            if cut >= 0:
                held, hit_stop = held[:cut], True
                break
            keep = _partial_stop_length(held, stops)
            ready, held = held[: len(held) - keep], held[len(held) - keep :]
            if ready:
                yield ready
    finally:
        close = getattr(pieces, "close", None)
        if close:
            close()
    if len(logged) > sent:
        yield Tokens(logged[sent:])
    if held:
        yield held
    stats = stream.stats
    reason = "stop" if hit_stop or stats.stopped else "length"
    completion = stats.new_tokens - (1 if stats.stopped else 0)
    yield Finish(reason, stats.prompt_tokens, completion)


def _partial_stop_length(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of `text` that is the beginning of a stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest
