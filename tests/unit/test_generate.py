import pytest
import torch
from peft import LoraConfig, get_peft_model

from loracle.model import GenerationConfig, encode_chat, half, question_messages, stream_chat, stream_ids
from loracle.model.chat import stop_token_ids
from loracle.model.detok import IncrementalDetokenizer
from loracle.model.generate import DECODERS, choose_decoder, penalise_repeats
from loracle.model.lean import LeanDecoder, supports_lean
from loracle.model.loader import LoadedModel

CJK = "安全 日本語 中文 检索 テスト"


def test_greedy_stream_matches_transformers_generate(tiny_lm: LoadedModel) -> None:
    prompt = encode_chat(tiny_lm.tokenizer, question_messages("Who founded it?"))
    stream = stream_ids(tiny_lm, prompt, GenerationConfig(max_new_tokens=12))
    text = stream.text()
    reference = tiny_lm.model.generate(
        torch.tensor([prompt]),
        max_new_tokens=12,
        do_sample=False,
        eos_token_id=sorted(stop_token_ids(tiny_lm.tokenizer)),
    )[0, len(prompt) :]
    expected = tiny_lm.tokenizer.decode(
        [t for t in reference.tolist() if t not in stop_token_ids(tiny_lm.tokenizer)],
        skip_special_tokens=True,
    )
    assert text == expected
    assert stream.stats.decoder == "lean"
    assert stream.stats.prompt_tokens == len(prompt) and 1 <= stream.stats.new_tokens <= 12


def test_token_logprobs_are_the_model_s_own_for_each_reply_token(tiny_lm: LoadedModel) -> None:
    prompt = encode_chat(tiny_lm.tokenizer, question_messages("Who founded it?"))
    config = GenerationConfig(max_new_tokens=8, logprobs=3, repetition_penalty=1.3)
    stream = stream_ids(tiny_lm, prompt, config)
    stream.text()
    logged = stream.stats.token_logprobs
    assert len(logged) == stream.stats.new_tokens - stream.stats.stopped  # every reply token, not the stop token
    reply = [entry.token for entry in logged]
    with torch.inference_mode():
        logits = tiny_lm.model(input_ids=torch.tensor([prompt + reply])).logits[0, len(prompt) - 1 : -1].float()
    seen = set(prompt)
    for position, entry in enumerate(logged):
        expected = torch.log_softmax(penalise_repeats(logits[position], torch.tensor(sorted(seen)), 1.3), dim=-1)
        assert entry.logprob == pytest.approx(float(expected[entry.token]), abs=1e-4)
        assert [t for t, _ in entry.top] == expected.topk(3).indices.tolist()
        assert entry.top[0] == (entry.token, pytest.approx(entry.logprob))  # greedy picks the most likely
        seen.add(entry.token)
    plain = stream_ids(tiny_lm, prompt, GenerationConfig(max_new_tokens=8))
    assert plain.text() and plain.stats.token_logprobs == []  # off unless asked for


@pytest.mark.parametrize("decoder", ["transformers", "lean", "lean-fp16"])
def test_every_decoder_gives_the_same_greedy_text(tiny_lm: LoadedModel, decoder: str, monkeypatch) -> None:
    monkeypatch.setattr(half, "MIN_WEIGHTS", 0)  # pack even the tiny model's small matrices
    messages = question_messages("Who founded the observatory?")
    reference = stream_chat(tiny_lm, messages, GenerationConfig(max_new_tokens=16, decoder="transformers"))
    stream = stream_chat(tiny_lm, messages, GenerationConfig(max_new_tokens=16, decoder=decoder))
    assert stream.text() == reference.text()
    assert stream.stats.decoder == decoder


def test_lean_logits_match_the_model_across_prefill_chunks(tiny_lm: LoadedModel) -> None:
    ids = torch.arange(3, 40)
    with torch.inference_mode():
        full = tiny_lm.model(ids.unsqueeze(0)).logits[0]
        lean = LeanDecoder(tiny_lm.model, capacity=64)
        first = lean.step(ids[:20])  # the prompt
        second = lean.step(ids[20:30])  # a second chunk attends to the cached prefix through the mask
        steps = [lean.step(ids[i : i + 1]) for i in range(30, 37)]
    assert torch.allclose(first, full[19], atol=1e-4)
    assert torch.allclose(second, full[29], atol=1e-4)
    assert torch.allclose(torch.stack(steps), full[30:37], atol=1e-4)


def test_lean_cache_refuses_to_overflow(tiny_lm: LoadedModel) -> None:
    lean = LeanDecoder(tiny_lm.model, capacity=4)
    with torch.inference_mode(), pytest.raises(ValueError, match="holds 4 positions"):
        lean.step(torch.arange(5))


def _lora(tiny_lm: LoadedModel) -> LoadedModel:
    peft_model = get_peft_model(tiny_lm.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"]))
    torch.manual_seed(0)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    peft_model.eval()
    return LoadedModel(peft_model, tiny_lm.tokenizer, "tiny+lora", "memory", tiny_lm.fingerprint)


@pytest.mark.parametrize("fp16", [False, True])
def test_lean_applies_unmerged_lora_like_peft(tiny_lm: LoadedModel, fp16: bool, monkeypatch) -> None:
    monkeypatch.setattr(half, "MIN_WEIGHTS", 0)
    adapted = _lora(tiny_lm)
    assert supports_lean(adapted.model)
    ids = torch.arange(3, 20)
    with torch.inference_mode():
        expected = adapted.model(input_ids=ids.unsqueeze(0)).logits[0, -1]
        lean = LeanDecoder(adapted.model, capacity=32, fp16_weights=fp16)
        lean.step(ids[:-1])
        got = lean.step(ids[-1:])
    assert lean.packs if fp16 else not lean.packs
    assert torch.allclose(got, expected, atol=2e-2 if fp16 else 1e-4)


def test_lean_stacks_several_weighted_adapters_like_peft(tiny_lm: LoadedModel, tmp_path) -> None:
    from loracle.model import apply_adapters
    from tests.unit.test_adapters import make_adapter

    a = make_adapter(tiny_lm, tmp_path / "a", seed=1)
    b = make_adapter(tiny_lm, tmp_path / "b", seed=2, targets=("q_proj", "v_proj", "down_proj"))
    adapted = apply_adapters(tiny_lm, [a, b], [1.0, 0.5])
    ids = torch.arange(3, 20)
    with torch.inference_mode():
        expected = adapted.model(input_ids=ids.unsqueeze(0)).logits[0, -1]
        lean = LeanDecoder(adapted.model, capacity=32)
        lean.step(ids[:-1])
        got = lean.step(ids[-1:])
    assert len(lean.loras) == 2 * 3 and not lean.own_forward  # q, v and down in both layers, each one product
    assert torch.allclose(got, expected, atol=1e-4)


def test_fp16_packs_are_rebuilt_when_a_weight_changes_in_place(tiny_lm: LoadedModel, monkeypatch) -> None:
    monkeypatch.setattr(half, "MIN_WEIGHTS", 0)
    proj = tiny_lm.model.model.layers[0].mlp.down_proj
    first = half.packed_fp16(proj)
    assert half.packed_fp16(proj) is first  # reused while unchanged
    proj.weight.data += 0.5  # what an in-place adapter merge does: no version bump, same address
    assert half.packed_fp16(proj) is not first
    x = torch.randn(1, 1, proj.in_features)
    assert torch.allclose(half.linear_fp16(x, half.packed_fp16(proj)), proj(x), atol=2e-2)


def test_auto_decoder_choice(tiny_lm: LoadedModel, monkeypatch) -> None:
    assert choose_decoder(tiny_lm, GenerationConfig(), budget=8) == "lean"
    monkeypatch.setattr(half, "MIN_WEIGHTS", 0)
    assert choose_decoder(tiny_lm, GenerationConfig(), budget=half.FP16_MIN_NEW_TOKENS) == "lean-fp16"
    assert choose_decoder(tiny_lm, GenerationConfig(), budget=8) == "lean"  # short: packing would not pay off
    stream_chat(tiny_lm, question_messages("x"), GenerationConfig(max_new_tokens=2, decoder="lean-fp16")).text()
    assert choose_decoder(tiny_lm, GenerationConfig(), budget=8) == "lean-fp16"  # packs exist now
    tiny_lm.model.model.layers[1].mlp.up_proj.weight.data *= 2  # changed in place: its pack is stale
    assert choose_decoder(tiny_lm, GenerationConfig(), budget=8) == "lean"
    assert choose_decoder(tiny_lm, GenerationConfig(decoder="transformers"), budget=8) == "transformers"
    with pytest.raises(ValueError, match="unknown decoder"):
        choose_decoder(tiny_lm, GenerationConfig(decoder="turbo"), budget=8)
    assert set(DECODERS) == {"auto", "transformers", "lean", "lean-fp16"}


def test_incremental_detokenisation_of_multibyte_text(tiny_lm: LoadedModel) -> None:
    tokenizer = tiny_lm.tokenizer
    text = f"Paris {CJK} Ilse Marrow, 1987 — ok"
    ids = tokenizer.encode(text)
    detok = IncrementalDetokenizer(tokenizer)
    pieces = [detok.add(t) for t in ids]
    assert "".join(pieces) == tokenizer.decode(ids) == text
    assert "" in pieces  # some CJK characters span several byte tokens and were held back until complete
    assert all("\ufffd" not in p for p in pieces)


def test_incremental_detokenisation_skips_special_tokens(tiny_lm: LoadedModel) -> None:
    tokenizer = tiny_lm.tokenizer
    ids = [*tokenizer.encode("Paris"), tokenizer.convert_tokens_to_ids("<|im_start|>"), *tokenizer.encode(" France")]
    detok = IncrementalDetokenizer(tokenizer)
    assert "".join(detok.add(t) for t in ids) == tokenizer.decode(ids, skip_special_tokens=True)


def test_streamed_pieces_concatenate_to_the_text_of_the_generated_ids(tiny_lm: LoadedModel, monkeypatch) -> None:
    seen: list[int] = []
    original = IncrementalDetokenizer.add

    def recording_add(self: IncrementalDetokenizer, token: int) -> str:
        seen.append(token)
        return original(self, token)

    monkeypatch.setattr(IncrementalDetokenizer, "add", recording_add)
    config = GenerationConfig(max_new_tokens=40, temperature=1.5, seed=7)
    pieces = list(stream_chat(tiny_lm, question_messages(CJK), config))
    full = tiny_lm.tokenizer.decode(seen, skip_special_tokens=True)
    assert "".join(pieces) == full.removesuffix("\ufffd")


def test_stop_token_ends_generation(tiny_lm: LoadedModel) -> None:
    end = tiny_lm.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end in stop_token_ids(tiny_lm.tokenizer)
    stream = stream_chat(tiny_lm, question_messages("x"), GenerationConfig(max_new_tokens=20, logit_bias={end: 1e4}))
    assert stream.text() == ""
    assert stream.stats.new_tokens == 1


def test_max_new_tokens_bounds_the_answer(tiny_lm: LoadedModel) -> None:
    end = tiny_lm.tokenizer.convert_tokens_to_ids("<|im_end|>")
    stream = stream_chat(tiny_lm, question_messages("x"), GenerationConfig(max_new_tokens=5, logit_bias={end: -1e4}))
    stream.text()
    assert stream.stats.new_tokens == 5


def test_sampling_is_deterministic_with_a_seed(tiny_lm: LoadedModel) -> None:
    def sample(seed: int) -> str:
        config = GenerationConfig(max_new_tokens=20, temperature=1.0, top_p=0.95, seed=seed)
        return stream_chat(tiny_lm, question_messages("hello"), config).text()

    assert sample(3) == sample(3)
    assert len({sample(seed) for seed in range(4)}) > 1  # and the seed matters


def test_logit_bias_forces_a_token(tiny_lm: LoadedModel) -> None:
    target = tiny_lm.tokenizer.convert_tokens_to_ids("Paris") if "Paris" in tiny_lm.tokenizer.get_vocab() else 100
    config = GenerationConfig(max_new_tokens=3, logit_bias={target: 1e4})
    stream = stream_chat(tiny_lm, question_messages("x"), config)
    assert stream.text().startswith(tiny_lm.tokenizer.decode([target]))


def test_document_goes_into_prompt(tiny_lm: LoadedModel) -> None:
    messages = question_messages("Who?", "The founder is Ilse.")
    assert "The founder is Ilse." in messages[-1]["content"] and "Who?" in messages[-1]["content"]
    assert len(encode_chat(tiny_lm.tokenizer, messages)) > len(
        encode_chat(tiny_lm.tokenizer, question_messages("Who?"))
    )


def test_default_threads(monkeypatch) -> None:
    import loracle
    from loracle import runtime

    monkeypatch.delenv(runtime.THREADS_ENV, raising=False)
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(loracle, "OMP_WORKERS_SLEEP", True)
    assert runtime.default_threads() == 2 and "2 cores" in runtime.threads_reason()
    monkeypatch.setattr(loracle, "OMP_WORKERS_SLEEP", False)
    assert runtime.default_threads() == 1 and "spin" in runtime.threads_reason()
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 16)
    assert runtime.default_threads() == 4
    monkeypatch.setenv(runtime.THREADS_ENV, "3")
    assert runtime.default_threads() == 3 and runtime.THREADS_ENV in runtime.threads_reason()


@pytest.mark.parametrize("fp16", [False, True])
def test_lean_runs_modules_with_forward_hooks(tiny_lm: LoadedModel, fp16: bool) -> None:
    """The ttt and hypernet learners attach adapters as forward hooks; reading the weight directly would skip them."""
    down = tiny_lm.model.model.layers[-1].mlp.down_proj
    ids = torch.tensor(encode_chat(tiny_lm.tokenizer, question_messages("Who founded it?")))

    def shifted(_module: torch.nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        return output + 0.5

    handle = down.register_forward_hook(shifted)
    try:
        with torch.no_grad():
            expected = tiny_lm.model(input_ids=ids[None]).logits[0, -1]
            lean = LeanDecoder(tiny_lm.model, capacity=64, fp16_weights=fp16)
            lean.step(ids[:-1])
            got = lean.step(ids[-1:])
    finally:
        handle.remove()
    with torch.no_grad():
        assert not torch.allclose(tiny_lm.model(input_ids=ids[None]).logits[0, -1], expected)
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)


def test_bias_once_spends_each_tokens_bias_on_its_first_use(tiny_lm: LoadedModel) -> None:
    favoured = [tiny_lm.tokenizer.convert_tokens_to_ids(letter) for letter in "abc"]

    def reply(once: bool) -> str:
        config = GenerationConfig(max_new_tokens=3, logit_bias=dict.fromkeys(favoured, 1e4), bias_once=once)
        return stream_chat(tiny_lm, question_messages("x"), config).text()

    assert sorted(reply(once=True)) == ["a", "b", "c"]  # each favoured letter once
    assert reply(once=False) in {"aaa", "bbb", "ccc"}  # a constant bias repeats the strongest one


@pytest.mark.parametrize("narrow", [{"top_k": 1}, {"min_p": 1.0}])
def test_top_k_1_and_min_p_1_leave_only_the_greedy_token(tiny_lm: LoadedModel, narrow: dict) -> None:
    greedy = stream_chat(tiny_lm, question_messages("hello there"), GenerationConfig(max_new_tokens=12)).text()
    sampled = {
        stream_chat(
            tiny_lm, question_messages("hello there"), GenerationConfig(12, temperature=1.5, seed=seed, **narrow)
        ).text()
        for seed in range(3)
    }
    assert sampled == {greedy}
    wide = {
        stream_chat(tiny_lm, question_messages("hello there"), GenerationConfig(12, temperature=1.5, seed=s)).text()
        for s in range(3)
    }
    assert wide != {greedy}  # without the narrowing, sampling at this temperature strays


def test_penalise_repeats_divides_positive_and_multiplies_negative_logits() -> None:
    logits = torch.tensor([2.0, -2.0, 4.0, 1.0])
    penalised = penalise_repeats(logits, torch.tensor([0, 1]), 2.0)
    assert penalised.tolist() == [1.0, -4.0, 4.0, 1.0]
    assert logits.tolist() == [2.0, -2.0, 4.0, 1.0]  # the caller's logits are left alone


def test_a_repetition_penalty_changes_a_greedy_reply_that_repeats(tiny_lm: LoadedModel) -> None:
    plain = stream_chat(tiny_lm, question_messages("hello there"), GenerationConfig(max_new_tokens=24)).text()
    config = GenerationConfig(max_new_tokens=24, repetition_penalty=3.0)
    penalised = stream_chat(tiny_lm, question_messages("hello there"), config).text()
    assert penalised != plain
    tokens = tiny_lm.tokenizer.tokenize(penalised)
    assert len(set(tokens)) / len(tokens) > len(set(tiny_lm.tokenizer.tokenize(plain))) / len(
        tiny_lm.tokenizer.tokenize(plain)
    )
