"""The hypernetwork's cached training set and the training run on it, on the tiny model: shards, resumable
make-data, exact resume of training, the log, the curve."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from loracle.errors import LoracleError
from loracle.learners.hypernet.curve import plot_curve, read_heldout, read_log
from loracle.learners.hypernet.data import single_fact_sample
from loracle.learners.hypernet.dataset import (
    DataSettings,
    TrainingSet,
    make_data,
    mixed_sample,
    parse_kinds,
    read_docs,
    shard_path,
)
from loracle.learners.hypernet.engine import DocToLora
from loracle.learners.hypernet.reading import DocPrompt
from loracle.learners.hypernet.train import CHECKPOINT, LOG, TrainConfig, Trainer, data_position

pytestmark = pytest.mark.usefixtures("one_thread")

SETTINGS = DataSettings({"single": 6, "multi": 3}, shard_docs=4, max_doc_tokens=64, questions=3, general=3)
SMALL = TrainConfig(rank=2, width=16, heads=2, bias_rank=2, checkpoint_every=2, questions_per_doc=2, warmup=2)


@pytest.fixture
def data_dir(tiny_lm, tmp_path: Path) -> Path:
    make_data(tiny_lm, tmp_path / "data", SETTINGS)
    return tmp_path / "data"


def test_single_fact_documents_hold_their_answer():
    rng = random.Random(3)
    for _ in range(50):
        sample = single_fact_sample(rng)
        (question, answers), *more = sample.qa
        assert not more and question.endswith("?") and answers[0] in sample.text and sample.text.count(".") >= 1


def test_make_data_writes_shards_with_the_teachers_top_k(tiny_lm, data_dir: Path):
    names = sorted(p.name for p in data_dir.iterdir())
    assert names == ["general.safetensors", "manifest.json", *(f"multi-0000{i}.safetensors" for i in range(1)),
                     *(f"single-0000{i}.safetensors" for i in range(2))]  # fmt: skip
    data = TrainingSet.load(data_dir, tiny_lm.fingerprint)
    assert [d.kind for d in data.docs].count("single") == 6 and len(data.general) == 3
    doc = data.docs[0]
    target = doc.targets[0]
    assert target.top_ids.shape == target.top_logp.shape == (len(target.answer), 16)
    # the top-k is the base model's with the document in its prompt, at each answer token
    prompt = DocPrompt.for_tokenizer(tiny_lm.tokenizer)
    context = prompt.prefix + doc.ids + prompt.suffix(tiny_lm.tokenizer, doc.qa[0][0])
    with torch.no_grad():
        logits = tiny_lm.model(input_ids=torch.tensor([context + target.answer])).logits[0]
    logp = F.log_softmax(logits[len(context) - 1 : -1].float(), dim=-1)
    assert torch.allclose(logp.topk(16).values, target.top_logp, atol=1e-4)


def test_a_rerun_completes_missing_shards_with_the_same_documents(tiny_lm, data_dir: Path):
    lost = shard_path(data_dir, "single", 1)
    before = lost.read_bytes()
    lost.unlink()
    with pytest.raises(LoracleError, match="missing"):
        TrainingSet.load(data_dir, tiny_lm.fingerprint)
    assert make_data(tiny_lm, data_dir, SETTINGS) == {"single": 1, "multi": 0}
    assert lost.read_bytes() == before


def test_make_data_refuses_other_settings_and_other_folders(tiny_lm, data_dir: Path, tmp_path: Path):
    with pytest.raises(LoracleError, match="other settings"):
        make_data(tiny_lm, data_dir, DataSettings({"single": 6, "multi": 3}, seed=1, shard_docs=4))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.md").write_text("mine")
    with pytest.raises(LoracleError, match="not a hypernet training set"):
        make_data(tiny_lm, tmp_path / "notes", SETTINGS)
    with pytest.raises(LoracleError, match="kind"):
        make_data(tiny_lm, tmp_path / "x", DataSettings({"novels": 2}))
    with pytest.raises(LoracleError, match="another base model"):
        TrainingSet.load(data_dir, "0" * 16)
    shard_path(data_dir, "multi", 0).write_bytes(b"half a shard")
    with pytest.raises(LoracleError, match=r"multi-00000\.safetensors: not a readable training shard"):
        read_docs(shard_path(data_dir, "multi", 0))


def test_every_epoch_visits_every_document_once():
    for epoch in range(3):
        seen = [data_position(7, epoch * 10 + i, 10) for i in range(10)]
        assert sorted(seen) == list(range(10))
    assert [data_position(7, i, 10) for i in range(10)] != [data_position(7, i, 10) for i in range(10, 20)]


def test_a_resumed_run_trains_exactly_as_a_straight_run(tiny_lm, data_dir: Path, tmp_path: Path):
    data = TrainingSet.load(data_dir, tiny_lm.fingerprint)
    straight = Trainer(tiny_lm, SMALL, tmp_path / "straight", data=data)
    straight.run(6)
    half = Trainer(tiny_lm, SMALL, tmp_path / "halves", data=data)
    half.run(3)  # a checkpoint at step 2 (every 2 steps) and at the end, step 3
    torch.manual_seed(1234)  # a new process would start from another RNG state: the checkpoint must restore it
    resumed = Trainer(tiny_lm, SMALL, tmp_path / "halves", data=data)
    assert resumed.step == 3
    resumed.run(6)
    for name, value in straight.net.state_dict().items():
        assert torch.equal(value, resumed.net.state_dict()[name]), name
    logs = [read_log(tmp_path / run / LOG) for run in ("straight", "halves")]
    assert [r["step"] for r in logs[1]] == list(range(1, 7))
    assert [(r["kl"], r["interference"], r["doc"]) for r in logs[0]] == [
        (r["kl"], r["interference"], r["doc"]) for r in logs[1]
    ]


def test_resuming_drops_log_lines_after_the_checkpoint(tiny_lm, data_dir: Path, tmp_path: Path):
    data = TrainingSet.load(data_dir, tiny_lm.fingerprint)
    run = tmp_path / "run"
    Trainer(tiny_lm, SMALL, run, data=data).run(2)
    with (run / LOG).open("a") as log:  # what a kill -9 between checkpoints leaves: steps 3 and half of 4
        log.write(json.dumps({"step": 3, "kl": 1.0}) + '\n{"step": 4, "k')
    resumed = Trainer(tiny_lm, SMALL, run, data=data)
    assert [r["step"] for r in read_log(run / LOG)] == [1, 2] and resumed.step == 2


def test_a_run_refuses_other_data_and_folders_that_are_not_runs(tiny_lm, data_dir: Path, tmp_path: Path):
    data = TrainingSet.load(data_dir, tiny_lm.fingerprint)
    Trainer(tiny_lm, SMALL, tmp_path / "run", data=data).run(1)
    with pytest.raises(LoracleError, match="other data"):
        Trainer(tiny_lm, SMALL, tmp_path / "run")  # generating its data, not reading the cached set
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.md").write_text("mine")
    with pytest.raises(LoracleError, match="holds no training run"):
        Trainer(tiny_lm, SMALL, tmp_path / "notes", data=data).run(1)
    assert (tmp_path / "notes" / "todo.md").read_text() == "mine"


def test_interference_is_trained_and_logged(tiny_lm, data_dir: Path, tmp_path: Path):
    data = TrainingSet.load(data_dir, tiny_lm.fingerprint)
    config = TrainConfig(**{**SMALL.__dict__, "interference": 2, "questions_per_doc": 1})
    trainer = Trainer(tiny_lm, config, tmp_path / "run", data=data)
    trainer.run(2)
    assert all(r["interference"] > 0 for r in read_log(tmp_path / "run" / LOG))
    off = Trainer(tiny_lm, TrainConfig(**{**config.__dict__, "interference": 0}), tmp_path / "off", data=data)
    off.run(1)
    assert read_log(tmp_path / "off" / LOG)[0]["interference"] == 0


def test_a_run_folder_loads_as_the_learners_checkpoint(tiny_lm, data_dir: Path, tmp_path: Path):
    data = TrainingSet.load(data_dir, tiny_lm.fingerprint)
    trainer = Trainer(tiny_lm, SMALL, tmp_path / "run", data=data)
    trainer.run(2)
    engine = DocToLora.from_checkpoint(tiny_lm, tmp_path / "run")
    assert engine.net.config == trainer.net.config and (tmp_path / "run" / CHECKPOINT / "meta.json").is_file()


def test_the_curve_is_drawn_from_the_log(tmp_path: Path):
    records = [{"step": i, "kl": 3.0 / i, "interference": 0.1} for i in range(1, 30)]
    plot_curve(records, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(LoracleError, match="nothing to plot"):
        plot_curve([], tmp_path / "empty.png")


def test_the_log_is_read_up_to_a_checkpoints_step(tmp_path: Path):
    lines = [{"step": n, "kl": 1.0, "seconds": 1.0} for n in range(1, 6)]
    lines += [{"step": n, "heldout_kl": 2.0} for n in (0, 3, 5)]
    (tmp_path / LOG).write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert [r["step"] for r in read_log(tmp_path / LOG, until=3)] == [1, 2, 3]
    assert [r["step"] for r in read_heldout(tmp_path / LOG, until=3)] == [0, 3]
    assert len(read_log(tmp_path / LOG)) == 5  # no step given: the whole log


def test_kinds_are_parsed_with_their_counts():
    assert parse_kinds("single, multi:500", 100) == {"single": 100, "multi": 500}
    for bad in ("single:many", "", "single:0", "poems:3"):
        with pytest.raises(LoracleError):
            parse_kinds(bad, 100)


def test_a_generated_mix_draws_kinds_by_weight():
    rng = random.Random(0)
    kinds = [mixed_sample(rng, {"single": 3, "multi": 1}).kind for _ in range(200)]
    assert 120 < kinds.count("single") < 180 and kinds.count("multi") == 200 - kinds.count("single")


def test_without_interference_no_general_replies_are_made(tiny_lm, tmp_path: Path, monkeypatch):
    def refuse(*_args):
        raise AssertionError("general targets made for a run that does not use them")

    monkeypatch.setattr("loracle.learners.hypernet.dataset.general_targets", refuse)
    config = TrainConfig(**{**SMALL.__dict__, "interference": 0, "max_doc_tokens": 48, "mix": "multi"})
    Trainer(tiny_lm, config, tmp_path / "run").run(1)  # generating its data: the teacher runs, general replies don't
    assert read_log(tmp_path / "run" / LOG)[0]["interference"] == 0
