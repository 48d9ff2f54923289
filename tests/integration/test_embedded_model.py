"""The real embedded model: the conversion cache (fill, reuse, rebuild when corrupt) and answers it should get right."""

from __future__ import annotations

from pathlib import Path

import pytest

from loracle.eval.qa import load_qa
from loracle.eval.scoring import is_correct
from loracle.model import (
    GenerationConfig,
    LoadedModel,
    generate_chat,
    load_model,
    loader,
    question_messages,
    stream_chat,
)
from loracle.model.cache import CACHE_ENV, ConvertedModelCache
from loracle.model.embedded import embedded_gguf_path
from loracle.sources import read_document

pytestmark = pytest.mark.integration


def test_conversion_cache_fills_is_reused_and_rebuilds_a_corrupt_entry(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    conversions: list[Path] = []
    convert = loader._convert_gguf

    def counting_convert(gguf: Path, dtype):
        conversions.append(gguf)
        return convert(gguf, dtype)

    monkeypatch.setattr(loader, "_convert_gguf", counting_convert)

    first = load_model("embedded")  # an empty cache: converts the GGUF
    cache = ConvertedModelCache()
    entry = cache.entry_for(embedded_gguf_path())
    assert entry.parent == tmp_path / "models"
    assert cache.is_complete(entry) and cache.sizes_match(entry)
    assert (entry / "model.safetensors").is_file() and (entry / "tokenizer.json").is_file()
    assert not list(entry.parent.glob(".staging-*"))  # nothing half-written left behind
    assert len(conversions) == 1

    second = load_model("embedded")  # uses the entry
    assert len(conversions) == 1 and second.fingerprint == first.fingerprint

    weights = entry / "model.safetensors"
    size = weights.stat().st_size
    with weights.open("r+b") as handle:  # garbage over the header, same size: only loading can tell
        handle.write(b"\xff" * 64)
    rebuilt = load_model("embedded")
    assert len(conversions) == 2
    assert rebuilt.fingerprint == first.fingerprint
    assert cache.is_complete(entry) and weights.stat().st_size == size
    assert weights.read_bytes()[:8] != b"\xff" * 8


def test_the_capital_of_france_with_every_decoder(embedded_lm: LoadedModel) -> None:
    messages = question_messages("What is the capital of France?")
    answers = {}
    for decoder in ("transformers", "lean", "lean-fp16"):
        stream = stream_chat(embedded_lm, messages, GenerationConfig(max_new_tokens=16, decoder=decoder))
        answers[decoder] = stream.text()
        assert stream.stats.decoder == decoder
    assert "Paris" in answers["transformers"]
    assert answers["lean"] == answers["transformers"] == answers["lean-fp16"]


def test_answers_a_sample_question_from_the_document_in_context(embedded_lm: LoadedModel, sample_dir: Path) -> None:
    item = next(q for q in load_qa(sample_dir / "questions.jsonl") if "Harrow" in q.answers)
    document = read_document(sample_dir / item.docs[0]).text
    reply = generate_chat(embedded_lm, question_messages(item.question, document), GenerationConfig(max_new_tokens=24))
    assert is_correct(reply, item.answers), reply
