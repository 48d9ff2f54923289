"""Greedy and sampled decoding with a KV cache, streamed as text pieces.

A hand-written loop (rather than `model.generate`) so that every caller — CLI, server, eval — gets
the same streaming, stop handling and timing, and so the decode path is optimised in one place.

Decoders (`GenerationConfig.decoder`), measured by the generate benchmark:
- "transformers": the model's own forward with a dynamic cache; works for any causal LM (the reference).
- "lean": loracle.model.lean's step for Llama-family models: static KV cache, no per-step bookkeeping.
- "lean-fp16": the lean step reading weights from fp16 packs (loracle.model.half), about half the memory
  traffic per token; packing costs ~2 CPU-s once per model, so "auto" uses it only for longer generations
  or once fresh packs exist (not after a weight changed in place: that would mean repacking).
- "auto" (default): the fastest that applies.
With the OpenVINO engine selected (loracle.model.engine), "auto" decodes with it wherever it applies ("openvino").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from transformers import DynamicCache

from loracle.errors import LoracleError
from loracle.model import half
from loracle.model.chat import Message, encode_chat, stop_token_ids
from loracle.model.detok import IncrementalDetokenizer
from loracle.model.engine import engine_step
from loracle.model.lean import LeanDecoder, packable_linears, supports_lean
from loracle.model.loader import LoadedModel
from loracle.model.prefix import prefix_cache

if TYPE_CHECKING:
    from loracle.model.constrain import JSONConstraint

DECODERS = ("auto", "transformers", "lean", "lean-fp16")


@dataclass
class GenerationConfig:
    max_new_tokens: int = 200
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    #: sample only from the k most likely tokens (0: all)
    top_k: int = 0
    #: sample only from tokens at least this fraction as likely as the most likely one (0: all)
    min_p: float = 0.0
    #: divide a positive logit (multiply a negative one) of every token already in the prompt or reply by this,
    #: greedy or not, as transformers and vLLM do (1: off)
    repetition_penalty: float = 1.0
    seed: int | None = None
    #: added to the logits of these token ids at every step (used by the context learner's logit bias)
    logit_bias: dict[int, float] = field(default_factory=dict)
    #: withdraw a token's bias once the reply has used it: a bias toward a passage's words then helps copy
    #: them without trapping greedy decoding in a loop of biased tokens ("Emperor Byzantine Emperor ...")
    bias_once: bool = False
    #: one of DECODERS
    decoder: str = "auto"
    #: record each chosen token's log probability and this many most likely alternatives in
    #: `GenerationStats.token_logprobs` (None: off; the OpenAI API's logprobs / top_logprobs)
    logprobs: int | None = None
    #: when set, the reply is JSON valid for this JSON schema (loracle.model.constrain): it can end only once
    #: the document is whole, so only a budget that runs out first leaves it unfinished (stats.stopped False)
    json_schema: dict | None = None


@dataclass(frozen=True)
class TokenLogprob:
    """A chosen token's log probability, and the most likely tokens at its step, under the distribution it was
    picked from (logit bias and repetition penalty applied; before temperature, top-k, top-p and min-p)."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    #: building the decoder (the static cache; fp16 packs on a model's first such generation)
    setup_s: float = 0.0
    #: CPU time of this process (all threads) in prefill and decode: steadier than wall time on a shared machine
    prefill_cpu_s: float = 0.0
    decode_cpu_s: float = 0.0
    decoder: str = ""
    #: True when the model ended its turn (a stop token), False when the token budget ran out (the server's
    #: finish_reason "stop" vs "length")
    stopped: bool = False
    #: one entry per token of the reply (not the stop token), when GenerationConfig.logprobs asks for them
    token_logprobs: list[TokenLogprob] = field(default_factory=list)

    @property
    def decode_tokens_per_s(self) -> float:
        return (self.new_tokens - 1) / self.decode_s if self.decode_s > 0 and self.new_tokens > 1 else 0.0

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s > 0 else 0.0


class TextStream:
    """Iterates text pieces as they are decoded; `stats` is complete once iteration ends."""

    def __init__(self, pieces: Iterator[str], stats: GenerationStats) -> None:
        self._pieces = pieces
        self.stats = stats

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def text(self) -> str:
        return "".join(self._pieces)


def stream_ids(
    lm: LoadedModel,
    prompt_ids: Sequence[int],
    config: GenerationConfig | None = None,
    prefix: torch.Tensor | None = None,
) -> TextStream:
    """Decode from `prompt_ids`, yielding text pieces as soon as they form complete characters. `prefix` (a prefix
    adapter's cache, loracle.model.prefix) goes before the prompt; it decodes with torch's own forward."""
    config = config or GenerationConfig()
    stats = GenerationStats(prompt_tokens=len(prompt_ids))
    return TextStream(_decode(lm, list(prompt_ids), config, stats, prefix), stats)


def stream_chat(
    lm: LoadedModel,
    messages: Sequence[Message],
    config: GenerationConfig | None = None,
    prefix: torch.Tensor | None = None,
) -> TextStream:
    return stream_ids(lm, encode_chat(lm.tokenizer, messages), config, prefix)


def generate_chat(
    lm: LoadedModel,
    messages: Sequence[Message],
    config: GenerationConfig | None = None,
    prefix: torch.Tensor | None = None,
) -> str:
    return stream_chat(lm, messages, config, prefix).text().strip()


def choose_decoder(lm: LoadedModel, config: GenerationConfig, budget: int) -> str:
    """The decoder `config.decoder` asks for, with "auto" resolved for this model and generation length."""
    if config.decoder not in DECODERS:
        raise ValueError(f"unknown decoder {config.decoder!r}; one of {', '.join(DECODERS)}")
    lean = supports_lean(lm.model)
    if config.decoder != "auto":
        if config.decoder != "transformers" and not lean:
            raise ValueError(f"decoder {config.decoder!r} needs a Llama-family model; {lm.name} is not one")
        return config.decoder
    if not lean:
        return "transformers"
    if lm.device.type != "cpu" or not half.fp16_packing_available():
        return "lean"
    if budget >= half.FP16_MIN_NEW_TOKENS or half.all_packed(packable_linears(lm.model)):
        return "lean-fp16"
    return "lean"


Step = Callable[[list[int]], torch.Tensor]


def _step_function(
    lm: LoadedModel, config: GenerationConfig, budget: int, capacity: int, prefix: torch.Tensor | None = None
) -> tuple[Step, str]:
    """A function that feeds the next ids to the model and returns the last position's logits, and its decoder.

    With decoder "auto", the selected engine's step where it can run this model; else torch's decoder. A prefix
    primes the transformers decoder's cache (the lean decoders and the engine take none).
    """
    if prefix is not None:
        return _torch_step(lm, "transformers", capacity, prefix), "transformers"
    decoder = choose_decoder(lm, config, budget)
    if config.decoder == "auto" and (engine := engine_step(lm.model)) is not None:
        return engine, "openvino"
    return _torch_step(lm, decoder, capacity), decoder


def _torch_step(lm: LoadedModel, decoder: str, capacity: int, prefix: torch.Tensor | None = None) -> Step:
    device = lm.device
    if decoder in ("lean", "lean-fp16"):
        lean = LeanDecoder(lm.model, capacity, fp16_weights=decoder == "lean-fp16")
        return lambda ids: lean.step(torch.tensor(ids, device=device))
    cache = prefix_cache(prefix) if prefix is not None else DynamicCache()

    def step(ids: list[int]) -> torch.Tensor:
        out = lm.model(input_ids=torch.tensor([ids], device=device), cache=cache, use_cache=True)
        return out.logits[0, -1]

    return step


def _decode(
    lm: LoadedModel,
    prompt: list[int],
    config: GenerationConfig,
    stats: GenerationStats,
    prefix: torch.Tensor | None = None,
) -> Iterator[str]:
    stops = stop_token_ids(lm.tokenizer)
    generator = torch.Generator().manual_seed(config.seed) if config.seed is not None else None
    bias = _bias_vector(config.logit_bias, lm.model.config.vocab_size, lm.device)
    max_positions = getattr(lm.model.config, "max_position_embeddings", None) or 1 << 30
    used = len(prompt) + (prefix.shape[3] if prefix is not None else 0)
    budget = max(0, min(config.max_new_tokens, max_positions - used))
    if budget == 0:
        return
    detok = IncrementalDetokenizer(lm.tokenizer)
    constraint = _json_constraint(lm, config.json_schema) if config.json_schema is not None else None
    with torch.inference_mode():
        start = time.perf_counter()
        step, stats.decoder = _step_function(lm, config, budget, len(prompt) + budget, prefix)
        stats.setup_s = time.perf_counter() - start
        start += stats.setup_s
        cpu_start = time.process_time()
        ids = prompt
        seen = torch.tensor(sorted(set(prompt)), dtype=torch.long, device=lm.device)
        for index in range(budget):
            logits = step(ids).float()
            if bias is not None:
                logits = logits + bias
            if config.repetition_penalty != 1.0:
                logits = penalise_repeats(logits, seen, config.repetition_penalty)
            if constraint is not None:
                logits = constraint.mask(logits.cpu())
            token = _pick(logits, config, generator)
            if constraint is not None:
                token = constraint.accept(token, budget - index)  # near the budget's end: maybe the closing
            now, cpu = time.perf_counter(), time.process_time()
            if index == 0:
                stats.prefill_s, stats.prefill_cpu_s = now - start, cpu - cpu_start
            else:
                stats.decode_s = now - start - stats.prefill_s
                stats.decode_cpu_s = cpu - cpu_start - stats.prefill_cpu_s
            stats.new_tokens += 1
            if token in stops:
                stats.stopped = True
                break
            if config.logprobs is not None:
                stats.token_logprobs.append(_logprob(logits, token, config.logprobs))
            if bias is not None and config.bias_once:
                bias[token] = 0.0
            piece = detok.add(token)
            if piece:
                yield piece
            ids = [token]
            if config.repetition_penalty != 1.0:
                seen = torch.cat([seen, torch.tensor([token], device=lm.device)])


def _logprob(logits: torch.Tensor, token: int, top: int) -> TokenLogprob:
    logprobs = torch.log_softmax(logits, dim=-1)
    best = torch.topk(logprobs, top) if top > 0 else None
    alternatives = () if best is None else tuple(zip(best.indices.tolist(), best.values.tolist(), strict=True))
    return TokenLogprob(token, float(logprobs[token]), alternatives)


def check_json_schema(lm: LoadedModel, schema: dict) -> None:
    """Raise a LoracleError (SchemaError, naming the problem) unless `lm`'s replies can be held to `schema`.

    Compiling is what checks it, and the compiled grammar is cached, so the generation that follows reuses it.
    """
    _json_constraint(lm, schema)


def _json_constraint(lm: LoadedModel, schema: dict) -> JSONConstraint:
    try:  # xgrammar loads only for structured replies
        from loracle.model.constrain import JSONConstraint
    except ImportError as exc:
        raise LoracleError(
            f"structured output needs xgrammar ({exc}): run setup.sh, or pip install --no-deps xgrammar==0.2.9"
        ) from exc
    return JSONConstraint(lm.tokenizer, lm.model.config.vocab_size, schema)


def _bias_vector(bias: dict[int, float], vocab: int, device: torch.device) -> torch.Tensor | None:
    if not bias:
        return None
    vector = torch.zeros(vocab, device=device)
    for tid, value in bias.items():
        if 0 <= tid < vocab:
            vector[tid] += value
    return vector


def penalise_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """`logits` with those of the token ids `seen` made less likely by `penalty` (above 1; below 1: more likely)."""
    if seen.numel() == 0:
        return logits
    scores = logits[seen]
    logits = logits.clone()
    logits[seen] = torch.where(scores > 0, scores / penalty, scores * penalty)
    return logits


def _pick(logits: torch.Tensor, config: GenerationConfig, generator: torch.Generator | None) -> int:
    if config.temperature <= 0:
        return int(torch.argmax(logits))
    # a temperature too small for the logits' dtype would be 0 (0/0 = NaN): the smallest it holds is as greedy;
    # and from the top logit down, so that a tiny temperature sends the rest to -inf, not the top to inf (NaN)
    temperature = max(config.temperature, torch.finfo(logits.dtype).tiny)
    probs = torch.softmax((logits - logits.max()) / temperature, dim=-1)
    if 0 < config.top_k < probs.numel():
        probs = probs * (probs >= torch.topk(probs, config.top_k).values[-1])
    if config.min_p > 0:
        probs = probs * (probs >= config.min_p * probs.max())  # the most likely token always stays
    probs = probs / probs.sum()  # top_p's nucleus is of what top_k and min_p left
    if config.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < config.top_p
        keep[0] = True  # the most likely token always (a top_p below float32's smallest would keep none)
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))
