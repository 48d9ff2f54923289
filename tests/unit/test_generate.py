import torch

from loracle.model import GenerationConfig, encode_chat, question_messages, stream_chat, stream_ids
from loracle.model.chat import stop_token_ids
from loracle.model.loader import LoadedModel


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
    assert stream.stats.prompt_tokens == len(prompt) and 1 <= stream.stats.new_tokens <= 12


def test_pieces_concatenate_to_full_text(tiny_lm: LoadedModel) -> None:
    config = GenerationConfig(max_new_tokens=20, temperature=0.9, seed=3)
    pieces = list(stream_chat(tiny_lm, question_messages("hello"), config))
    again = stream_chat(tiny_lm, question_messages("hello"), config).text()
    assert "".join(pieces) == again  # same seed, same sample


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
