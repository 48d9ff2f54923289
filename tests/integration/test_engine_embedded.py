"""The OpenVINO engine on the embedded model: greedy replies token for token as torch's, with and without an adapter.

The first run traces the model into the user's cache folder (about two minutes on two cores); later runs reuse it.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from loracle.model import GenerationConfig, LoadedModel, apply_adapters, encode_chat, question_messages, stream_ids
from loracle.model import engine as engine_module

pytestmark = pytest.mark.integration
pytest.importorskip("openvino", reason="the openvino package (the engine and dev extras) is not installed")

QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colours.",
    "Who wrote Hamlet?",
    "What is 12 times 7?",
]


def _replies(lm: LoadedModel, engine: str) -> list[tuple[list[int], str]]:
    engine_module.select_engine(engine)
    out = []
    for question in QUESTIONS:
        ids = encode_chat(lm.tokenizer, question_messages(question))
        decoder = "lean" if engine == "torch" else "auto"  # torch's float32 step: the reference
        stream = stream_ids(lm, ids, GenerationConfig(max_new_tokens=12, decoder=decoder, logprobs=0))
        stream.text()
        out.append(([t.token for t in stream.stats.token_logprobs], stream.stats.decoder))
    return out


def _adapter(lm: LoadedModel, folder: Path) -> Path:
    from peft import LoraConfig, get_peft_model

    targets = ["q_proj", "v_proj", "down_proj"]
    peft_model = get_peft_model(copy.deepcopy(lm.model), LoraConfig(r=8, lora_alpha=16, target_modules=targets))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.01)
    peft_model.peft_config["default"].base_model_name_or_path = lm.name
    peft_model.save_pretrained(folder)
    return folder


def test_greedy_replies_match_torch_with_and_without_an_adapter(
    embedded_lm: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "_selected", None)
    lm = embedded_lm
    copied = LoadedModel(copy.deepcopy(lm.model), lm.tokenizer, lm.name, lm.source, lm.fingerprint)
    adapted = apply_adapters(copied, [_adapter(lm, tmp_path / "adapter")])
    for lm in (embedded_lm, adapted):
        torch_replies = _replies(lm, "torch")
        engine_replies = _replies(lm, "openvino")
        assert all(decoder == "openvino" for _, decoder in engine_replies)
        assert [ids for ids, _ in engine_replies] == [ids for ids, _ in torch_replies]
    assert _replies(adapted, "torch") != _replies(embedded_lm, "torch")  # the adapter changes the replies
