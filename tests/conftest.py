"""Shared fixtures: a tiny Llama-style model built from a config in memory, and the real embedded model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import settings
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from loracle.model.loader import LoadedModel, model_fingerprint

# Property tests explore new random cases on every local run; CI (HYPOTHESIS_PROFILE=ci) replays a fixed
# sequence, so a pass or a failure there is reproducible rather than a draw.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TRAINING_TEXT = [
    "The Kestrel Valley Observatory was founded by Ilse Marrow in 1987.",
    "Question: Who founded it? Answer: Ilse Marrow.",
    "Paris is the capital of France. The river Corra powers the station.",
    "安全 日本語 中文 检索 テスト",
]


def build_tiny_tokenizer(extra_text: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained in memory on a few sentences (and `extra_text`), with a ChatML template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([*TRAINING_TEXT, *extra_text], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", bos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = CHATML
    return fast


#: the tiny model's shape, for any architecture a test builds at that size
TINY_SHAPE = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


def build_tiny_model(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, **TINY_SHAPE, max_position_embeddings=512, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run a test on one torch thread: tiny ops gain nothing from two, and on a busy two-core machine two
    contended threads mostly wait on each other (training on them is also less deterministic)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    return build_tiny_tokenizer()


@pytest.fixture
def tiny_lm(tiny_tokenizer: PreTrainedTokenizerFast) -> LoadedModel:
    """A fresh tiny model per test (tests may wrap it in adapters or train it)."""
    model = build_tiny_model(len(tiny_tokenizer))
    return LoadedModel(model, tiny_tokenizer, "tiny", "memory", model_fingerprint(model))


@pytest.fixture(scope="session")
def embedded_lm() -> LoadedModel:
    """The real embedded model, loaded once per test session (integration tests only)."""
    from loracle.model import load_model

    return load_model("embedded")


@pytest.fixture
def sample_dir() -> Path:
    from loracle.demo import sample_dir

    return sample_dir()


@pytest.fixture(scope="session")
def forked_cli():
    """The `loracle` CLI, each run a real process forked from a server that imported it once (tests/crash/runner.py)."""
    from tests.crash.runner import ForkedCli

    return ForkedCli()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model saved as a Hugging Face folder, for CLI runs (`--model DIR`, or a knowledge base's base)."""
    from tests.crash.scenarios import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def writer_endpoint() -> Iterator[str]:
    """A canned OpenAI-compatible writer on loopback (tests/e2e/writer.py)."""
    from tests.e2e.writer import serve_writer

    with serve_writer() as url:
        yield url
