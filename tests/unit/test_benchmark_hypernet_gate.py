"""The hypernetwork gate: every document is answered four ways, shuffled adapters come from other documents, and
the verdict is the sign tests' (tiny model; the figures come from benchmarks/hypernet_gate.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from benchmarks.hypernet_gate import answer_all, answer_kl, derangement, gate, load_engine, peft_replies, verdicts

from loracle.learners.hypernet.checkpoint import save_hypernet
from loracle.learners.hypernet.dataset import DataSettings, TrainingSet, make_data
from loracle.learners.hypernet.engine import DocToLora
from loracle.learners.hypernet.network import Hypernet, NetworkConfig
from loracle.learners.hypernet.prefix import MemoryCompressor, PrefixConfig
from loracle.learners.hypernet.prefix_engine import DocToPrefix

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("count", [2, 3, 10, 100])
def test_the_derangement_gives_every_document_another_one(count: int):
    other = derangement(count)
    assert sorted(other) == list(range(count)) and all(other[i] != i for i in range(count))


def test_the_gate_passes_only_when_both_sign_tests_do():
    own = [True] * 10 + [False] * 10
    assert gate({"own document": own, "floor": [False] * 20, "shuffled document": [False] * 20})["passed"]
    beaten_by_noise = {"own document": own, "floor": [False] * 20, "shuffled document": own}  # a generic prior
    result = gate(beaten_by_noise)
    assert not result["passed"] and result["tests"]["floor"]["p"] < 0.01
    assert result["tests"]["shuffled document"] == {"gained": 0, "lost": 0, "p": 1.0}
    assert not gate({"own document": own[:6], "floor": [False] * 6, "shuffled document": [False] * 6})["passed"]


def test_every_document_is_answered_four_ways(tiny_lm, tmp_path: Path):
    make_data(tiny_lm, tmp_path / "held", DataSettings({"single": 3}, general=1))
    docs = TrainingSet.load(tmp_path / "held", tiny_lm.fingerprint).docs
    torch.manual_seed(0)
    net = Hypernet(NetworkConfig.for_model(tiny_lm.model, rank=2, width=16, heads=2, bias_rank=2))
    engine = DocToLora(tiny_lm, net.eval())
    replies = answer_all(engine, docs, max_new_tokens=3)
    assert set(replies) == {"floor", "ceiling", "own document", "shuffled document"}
    assert all(len(texts) == 3 for texts in replies.values())
    # an untrained network writes a zero delta: with it, closed-book answers are the floor's
    assert replies["own document"] == replies["shuffled document"] == replies["floor"]
    kls = answer_kl(engine, docs)  # and so is the KL on the answer
    assert kls["own document"] == kls["shuffled document"] == kls["floor"] and min(kls["floor"]) > 0
    correct = verdicts(docs, {**replies, "own document": [d.qa[0][1][0] for d in docs]})
    assert correct["own document"] == [True] * 3


def test_a_prefix_run_is_answered_four_ways_and_peft_gives_its_own_answers(tiny_lm, tmp_path: Path):
    make_data(tiny_lm, tmp_path / "held", DataSettings({"single": 3}, general=1))
    docs = TrainingSet.load(tmp_path / "held", tiny_lm.fingerprint).docs
    torch.manual_seed(0)
    net = MemoryCompressor.for_model(tiny_lm.model, PrefixConfig.for_model(tiny_lm.model, 4, 2))
    save_hypernet(tmp_path / "run" / "checkpoint", net, tiny_lm.fingerprint, {})
    engine, _ = load_engine(tiny_lm, tmp_path / "run")
    assert isinstance(engine, DocToPrefix)
    replies = answer_all(engine, docs, max_new_tokens=4)
    assert set(replies) == {"floor", "ceiling", "own document", "shuffled document"}
    assert all(len(texts) == 3 for texts in replies.values())
    # (that PEFT's replies follow the prefix, not the base model, is checked in test_hypernet_prefix.py)
    assert peft_replies(engine, docs, 4, tmp_path / "exported") == replies["own document"]
    kls = answer_kl(engine, docs)
    assert all(len(v) == 3 for v in kls.values()) and kls["own document"] != kls["shuffled document"]
