"""Design 2, memory tokens exported as a PEFT prefix adapter, on the tiny model (grouped-query attention: 4 query
heads, 2 key/value heads): the memory reads the document as a plain pass does, PEFT answers with the exported
adapter exactly as loracle does, training moves the loss and resumes exactly, held-out KL is logged."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from benchmarks.hypernet_gate import peft_greedy
from transformers import DynamicCache

from loracle.errors import DocumentError, LoracleError
from loracle.learners.hypernet.checkpoint import load_hypernet, save_hypernet
from loracle.learners.hypernet.curve import read_heldout, read_log
from loracle.learners.hypernet.dataset import DataSettings, TrainingSet, make_data
from loracle.learners.hypernet.engine import DocToLora
from loracle.learners.hypernet.prefix import MemoryCompressor, PrefixConfig, document_prefix, prefixed_states
from loracle.learners.hypernet.prefix_engine import DocToPrefix
from loracle.learners.hypernet.reading import DocPrompt, doc_ids, student_prompt
from loracle.learners.hypernet.train import LOG, TrainConfig, Trainer, distillation_loss
from loracle.model.chat import stop_token_ids
from loracle.model.generate import GenerationConfig, stream_ids
from loracle.model.prefix import shift_keys
from tests.unit.test_hypernet import one_fact, train_on_one_fact

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "The Kestrel Valley Observatory was founded by Ilse Marrow in 1987."
QUESTION = "Who founded the observatory?"
PREFIX = TrainConfig(design="prefix", memory_tokens=3, compress_rank=2, checkpoint_every=2, warmup=2, lr=1e-2)


def make_compressor(lm, memory_tokens: int = 3, rank: int = 2, trained: bool = True) -> MemoryCompressor:
    torch.manual_seed(0)
    net = MemoryCompressor.for_model(lm.model, PrefixConfig.for_model(lm.model, memory_tokens, rank))
    if trained:  # as after training: the compression LoRA's B no longer zero
        with torch.no_grad():
            for b in net.lora_b.values():
                b.normal_(0, 0.3)
    return net.eval()


def test_the_memory_reads_the_document_as_one_plain_pass_does(tiny_lm):
    """The context at negative positions and the memory at 0..m-1 give the values a single pass at natural
    positions gives (RoPE is relative); only the keys' rotation differs, that of a prefix at 0..m-1."""
    net = make_compressor(tiny_lm, trained=False)  # no LoRA effect, so a plain pass can be compared
    context = DocPrompt.for_tokenizer(tiny_lm.tokenizer).prefix + doc_ids(tiny_lm.tokenizer, TEXT)
    with torch.no_grad():
        kv = net(tiny_lm.model, context)
        embeds = torch.cat([tiny_lm.model.get_input_embeddings()(torch.tensor([context])), net.memory[None]], dim=1)
        cache = DynamicCache(config=tiny_lm.model.config)
        tiny_lm.model.model(inputs_embeds=embeds, cache=cache, use_cache=True)
    assert kv.shape == (2, 2, 2, 3, 8)  # layers, key/value, kv heads, memory tokens, head dim
    for layer, plain in zip(kv, cache.layers, strict=True):
        assert torch.allclose(layer[1], plain.values[0, :, -3:], atol=1e-5)
        assert not torch.allclose(layer[0], plain.keys[0, :, -3:], atol=1e-3)
    # and the memory did read the document: another document gives another cache
    with torch.no_grad():
        other = net(tiny_lm.model, context[:-3])
    assert not torch.allclose(other[1:, 1], kv[1:, 1])


def test_peft_answers_with_the_exported_prefix_exactly_as_loracle(tiny_lm, tmp_path: Path):
    from peft import PeftModel

    engine = DocToPrefix(tiny_lm, make_compressor(tiny_lm))
    kv = engine.internalise(TEXT)
    size = engine.export(kv, tmp_path / "adapter", {"doc_id": "kestrel"})
    assert size >= kv.numel() * 4
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert (config["peft_type"], config["num_virtual_tokens"], config["num_attention_heads"]) == ("PREFIX_TUNING", 3, 2)
    prompt = student_prompt(tiny_lm.tokenizer, QUESTION)
    ids = torch.tensor([prompt])
    with torch.no_grad():
        ours = tiny_lm.model.lm_head(prefixed_states(tiny_lm.model, kv, ids, torch.ones_like(ids)))  # training's path
        base = tiny_lm.model(input_ids=ids).logits
    peft_model = PeftModel.from_pretrained(tiny_lm.model, str(tmp_path / "adapter"))
    with torch.no_grad():
        theirs = peft_model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert not torch.allclose(base, ours, atol=1e-3)  # the prefix changes the answer
    assert torch.allclose(ours, theirs, atol=1e-5)


def strong_prefix(lm) -> tuple[DocToPrefix, torch.Tensor]:
    """A compressor whose prefix changes the tiny model's greedy reply (so a reply that ignores it shows)."""
    net = make_compressor(lm)
    with torch.no_grad():
        net.memory.mul_(20)
        for b in net.lora_b.values():
            b.normal_(0, 3)
    engine = DocToPrefix(lm, net)
    return engine, engine.internalise(TEXT) * 5


def reply_tokens(lm, prompt: list[int], kv: torch.Tensor, max_new_tokens: int) -> list[int]:
    """loracle's greedy reply with the prefix, as token ids (the tiny model's text may end mid-character)."""
    stream = stream_ids(lm, prompt, GenerationConfig(max_new_tokens, logprobs=0), prefix=kv)
    stream.text()
    return [t.token for t in stream.stats.token_logprobs]


def test_loracle_replies_with_the_prefix_as_greedy_decoding_of_peft_forward(tiny_lm, tmp_path: Path):
    """loracle's reply with the prefix (cached decoding) is the greedy decoding of PEFT's own forward over the
    growing sequence (no cache), and not the base model's reply."""
    from peft import PeftModel

    engine, kv = strong_prefix(tiny_lm)
    prompt = student_prompt(tiny_lm.tokenizer, QUESTION)
    ours = reply_tokens(tiny_lm, prompt, kv, 6)
    engine.export(kv, tmp_path / "adapter", {})
    peft_model = PeftModel.from_pretrained(tiny_lm.model, str(tmp_path / "adapter"))
    base = tiny_lm.model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=6, do_sample=False)
    assert peft_greedy(peft_model, prompt, 6, stop_token_ids(tiny_lm.tokenizer)) == ours
    assert base[0, len(prompt) :].tolist()[: len(ours)] != ours


def test_peft_generate_replies_with_the_prefix(tiny_lm, tmp_path: Path):
    from peft import PeftModel

    engine, kv = strong_prefix(tiny_lm)
    prompt = student_prompt(tiny_lm.tokenizer, QUESTION)
    ours = reply_tokens(tiny_lm, prompt, kv, 6)
    engine.export(kv, tmp_path / "adapter", {})
    peft_model = PeftModel.from_pretrained(tiny_lm.model, str(tmp_path / "adapter"))
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = peft_model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False)
    assert out[0, ids.shape[1] :].tolist()[: len(ours)] == ours


def test_a_few_steps_move_the_loss(tiny_lm):
    tiny_lm.model.requires_grad_(False)
    net = make_compressor(tiny_lm, trained=False).train()
    losses = train_on_one_fact(tiny_lm, net, TrainConfig(design="prefix", top_k=8), lr=3e-2, steps=6)
    assert losses[-1] < losses[0]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_a_long_document_is_read_in_chunks_whose_prefixes_are_joined(tiny_lm):
    net = make_compressor(tiny_lm)
    net.config.chunk_tokens = 5
    prompt = DocPrompt.for_tokenizer(tiny_lm.tokenizer).prefix
    ids = doc_ids(tiny_lm.tokenizer, TEXT)
    assert len(ids) > 10
    with torch.no_grad():
        kv = document_prefix(tiny_lm.model, net, prompt, ids)
        first = net(tiny_lm.model, [*prompt, *ids[:5]])
        second = net(tiny_lm.model, [*prompt, *ids[5:10]])
    chunks = -(-len(ids) // 5)
    assert kv.shape[3] == 3 * chunks and torch.equal(kv[:, :, :, :3], first)
    assert torch.allclose(kv[:, :, :, 3:6], shift_keys(tiny_lm.model, second, 3), atol=1e-6)
    assert torch.equal(DocToPrefix(tiny_lm, net).internalise(TEXT), kv)


def test_a_distractor_prefix_joins_the_students_and_changes_its_loss(tiny_lm):
    net = make_compressor(tiny_lm)
    prompt, doc = one_fact(tiny_lm, top_k=8)
    config = TrainConfig(design="prefix", top_k=8)
    with torch.no_grad():
        alone, _ = distillation_loss(tiny_lm, net, prompt, doc, [], config, random.Random(0))
        beside, _ = distillation_loss(tiny_lm, net, prompt, doc, [], config, random.Random(0), [7, 8, 9, 10])
    assert alone.item() != beside.item()


def test_a_run_with_distractors_trains_and_resumes(tiny_lm, data, tmp_path: Path):
    config = TrainConfig(**{**PREFIX.__dict__, "distractor": 1.0, "chunk_tokens": 8})
    Trainer(tiny_lm, config, tmp_path / "run", data=data).run(2)
    resumed = Trainer(tiny_lm, config, tmp_path / "run", data=data)
    assert resumed.step == 2 and resumed.net.config.chunk_tokens == 8


@pytest.fixture
def data(tiny_lm, tmp_path: Path) -> TrainingSet:
    make_data(tiny_lm, tmp_path / "data", DataSettings({"single": 6}, shard_docs=4, general=3))
    return TrainingSet.load(tmp_path / "data", tiny_lm.fingerprint)


@pytest.fixture
def heldout(tiny_lm, tmp_path: Path) -> TrainingSet:
    make_data(tiny_lm, tmp_path / "held", DataSettings({"single": 3}, seed=1000, general=3))
    return TrainingSet.load(tmp_path / "held", tiny_lm.fingerprint)


def test_a_resumed_run_logs_and_trains_exactly_as_a_straight_run(tiny_lm, data, heldout, tmp_path: Path):
    config = TrainConfig(**{**PREFIX.__dict__, "eval_every": 2, "eval_docs": 2})
    straight = Trainer(tiny_lm, config, tmp_path / "straight", data=data, heldout=heldout)
    straight.run(5)
    half = Trainer(tiny_lm, config, tmp_path / "halves", data=data, heldout=heldout)
    half.run(3)
    with (tmp_path / "halves" / LOG).open("a") as log:  # what a kill after step 4, before its checkpoint, leaves
        log.write(json.dumps({"step": 4, "kl": 1.0}) + "\n" + json.dumps({"step": 4, "heldout_kl": 9.0}) + "\n")
    torch.manual_seed(1234)
    resumed = Trainer(tiny_lm, config, tmp_path / "halves", data=data, heldout=heldout)
    assert resumed.step == 3
    resumed.run(5)
    for name, value in straight.net.state_dict().items():
        assert torch.equal(value, resumed.net.state_dict()[name]), name
    logs = [read_log(tmp_path / run / LOG) for run in ("straight", "halves")]
    assert [r["step"] for r in logs[1]] == [1, 2, 3, 4, 5] and all(r["cpu_seconds"] > 0 for r in logs[1])
    assert [(r["kl"], r["interference"]) for r in logs[0]] == [(r["kl"], r["interference"]) for r in logs[1]]
    held = [read_heldout(tmp_path / run / LOG) for run in ("straight", "halves")]
    assert [r["step"] for r in held[1]] == [0, 2, 4] and held[0][0]["heldout_docs"] == 2
    assert [r["heldout_kl"] for r in held[0]] == [r["heldout_kl"] for r in held[1]]
    assert held[0][0]["heldout_kl"] > 0 and held[0][0]["heldout_interference"] > 0


def test_a_prefix_run_loads_as_its_engine_and_not_as_a_lora_one(tiny_lm, data, tmp_path: Path):
    trainer = Trainer(tiny_lm, PREFIX, tmp_path / "run", data=data)
    trainer.run(2)
    engine = DocToPrefix.from_checkpoint(tiny_lm, tmp_path / "run")
    assert engine.net.config == trainer.net.config
    for name, value in trainer.net.state_dict().items():
        assert torch.equal(value, engine.net.state_dict()[name]), name
    with pytest.raises(LoracleError, match="memory-token"):
        DocToLora.from_checkpoint(tiny_lm, tmp_path / "run")
    with pytest.raises(DocumentError, match="empty document"):
        engine.internalise("   ")
    save_hypernet(tmp_path / "half", engine.net, tiny_lm.fingerprint, {}, dtype=torch.float16)
    assert isinstance(load_hypernet(tmp_path / "half", tiny_lm.fingerprint)[0], MemoryCompressor)


def test_an_unknown_design_is_one_clear_error(tiny_lm, tmp_path: Path):
    with pytest.raises(LoracleError, match="--design gist: not a design"):
        Trainer(tiny_lm, TrainConfig(design="gist"), tmp_path / "run")


def test_a_run_resumes_only_as_its_own_design(tiny_lm, data, tmp_path: Path):
    Trainer(tiny_lm, PREFIX, tmp_path / "run", data=data).run(1)
    with pytest.raises(LoracleError, match="a run of --design prefix"):
        Trainer(tiny_lm, TrainConfig(), tmp_path / "run", data=data)
