"""The doc-to-LoRA hypernetwork on the tiny model: shapes, identity at init, training, checkpoints, routing, PEFT."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
import torch

from loracle.adapters.manifest import AdapterManifest
from loracle.documents import Document
from loracle.errors import DocumentError, LoracleError
from loracle.learners.hypernet.checkpoint import load_hypernet, save_hypernet
from loracle.learners.hypernet.config import HypernetConfig
from loracle.learners.hypernet.data import Sample, fictional_sample
from loracle.learners.hypernet.dataset import CachedDoc, DataSettings, cache_samples
from loracle.learners.hypernet.engine import DocToLora
from loracle.learners.hypernet.learner import HypernetLearner
from loracle.learners.hypernet.network import Hypernet, NetworkConfig
from loracle.learners.hypernet.reading import DocPrompt, chunk_ids, doc_ids, read_chunks
from loracle.learners.hypernet.train import TrainConfig, Trainer, distillation_loss, learning_rate
from loracle.learners.lora import concat_ranks, hooked
from loracle.routing import ChunkRouter

pytestmark = pytest.mark.usefixtures("one_thread")


DOC = Document.from_text(
    "The Kestrel Valley Observatory was founded by Ilse Marrow in 1987. The river Corra powers the station.",
    title="Kestrel",
)


def make_net(lm, rank: int = 4, seed: int = 0, nonzero_b: bool = False) -> Hypernet:
    torch.manual_seed(seed)
    net = Hypernet(NetworkConfig.for_model(lm.model, rank=rank, width=32, heads=2, bias_rank=2))
    if nonzero_b:  # as after training: B no longer zero, so the adapter changes the model
        with torch.no_grad():
            for head in net.head_b.values():
                head.weight.normal_(0, 0.5)
            for b in net.bias_b.values():
                b.normal_(0, 0.1)
    return net.eval()


def logits(lm, text: str = "Who founded the observatory?") -> torch.Tensor:
    ids = torch.tensor([lm.tokenizer.encode(text)])
    with torch.no_grad():
        return lm.model(input_ids=ids).logits


def test_config_is_read_from_the_model(tiny_lm):
    config = NetworkConfig.for_model(tiny_lm.model)
    assert config.hidden_size == 32 and config.num_layers == 2
    assert config.targets == {"mlp.down_proj": (64, 32)}
    assert NetworkConfig.from_json(config.to_json()) == config


def test_generated_lora_shapes(tiny_lm):
    net = make_net(tiny_lm)
    prompt = DocPrompt.for_tokenizer(tiny_lm.tokenizer)
    chunks = chunk_ids(doc_ids(tiny_lm.tokenizer, DOC.text), 10)
    reading = read_chunks(tiny_lm.model, prompt, chunks)
    assert reading.hidden.shape[:2] == (len(chunks), 2)
    loras = net(reading)
    assert len(loras) == len(chunks)
    for layer in range(2):
        a, b = loras[0][f"model.layers.{layer}.mlp.down_proj"]
        assert a.shape == (4, 64) and b.shape == (32, 4)


def test_untrained_hypernet_is_the_identity(tiny_lm):
    engine = DocToLora(tiny_lm, make_net(tiny_lm), chunk_tokens=12)
    before = logits(tiny_lm)
    with hooked(tiny_lm.model, engine.combine(engine.internalise(DOC.text))):
        after = logits(tiny_lm)
    assert torch.equal(before, after)


def test_rank_concatenation_is_the_sum_of_the_adapters():
    torch.manual_seed(0)
    loras = [{"m": (torch.randn(3, 8), torch.randn(5, 3))} for _ in range(3)]
    a, b = concat_ranks(loras)["m"]
    assert a.shape == (9, 8) and b.shape == (5, 9)
    assert torch.allclose(b @ a, sum(lb @ la for la, lb in (lo["m"] for lo in loras)), atol=1e-5)


def test_router_picks_the_chunk_that_matches_the_question():
    router = ChunkRouter(
        [
            "Velmora is a town on the Corra River, founded by Ilse Marrow.",
            "The Harrow Telescope has a mirror 3.4 metres across.",
            "Lantern Night is a winter festival held at the observatory.",
        ]
    )
    assert router.top("How wide is the mirror of the Harrow Telescope?", 1) == [1]
    assert router.top("When is Lantern Night held?", 1) == [2]
    assert router.scores("completely unrelated words")[0] == 0
    assert router.coverage("How wide is the mirror of the Harrow Telescope?")[1] == 0.75  # all but "wide"
    # one shared word ("river") out of three is not a question about the Velmora chunk
    assert router.coverage("What is the longest river in Europe?")[0] == 1 / 3


def test_a_training_step_reduces_the_loss(tiny_lm):
    tiny_lm.model.requires_grad_(False)
    net = make_net(tiny_lm, rank=4)
    net.train()
    losses = train_on_one_fact(tiny_lm, net, TrainConfig(top_k=8, l1=0.0), lr=1e-3, steps=4)
    assert losses[-1] < losses[0]


def one_fact(lm, top_k: int) -> tuple[DocPrompt, CachedDoc]:
    """The document prompt and one single-fact document cached with the teacher's top-`top_k`."""
    prompt = DocPrompt.for_tokenizer(lm.tokenizer)
    sample = Sample("Ilse Marrow founded Kestrel in 1987.", [("Who founded Kestrel?", ["Ilse Marrow"])])
    return prompt, cache_samples(lm, prompt, [sample], DataSettings({}, top_k=top_k))[0]


def test_the_answer_cross_entropy_is_added_at_its_weight_and_is_that_of_the_exact_answer(tiny_lm):
    net = make_net(tiny_lm, nonzero_b=True)
    prompt, doc = one_fact(tiny_lm, top_k=8)
    plain, parts = distillation_loss(tiny_lm, net, prompt, doc, [], TrainConfig(top_k=8), random.Random(0))
    weighted, same = distillation_loss(
        tiny_lm, net, prompt, doc, [], TrainConfig(top_k=8, answer_ce=0.5), random.Random(0)
    )
    assert parts["answer_ce"] == same["answer_ce"] > 0
    assert weighted.item() == pytest.approx(plain.item() + 0.5 * parts["answer_ce"], rel=1e-5)
    target = doc.targets[0]
    ids = torch.tensor([target.prompt + target.answer])
    with (
        torch.no_grad(),
        hooked(tiny_lm.model, concat_ranks([net.bias_lora(), net(read_chunks(tiny_lm.model, prompt, [doc.ids]))[0]])),
    ):
        logp = torch.log_softmax(tiny_lm.model(input_ids=ids).logits[0].float(), dim=-1)
    first = len(target.prompt) - 1
    expected = -logp[first : first + len(target.answer)].gather(-1, torch.tensor(target.answer)[:, None]).mean()
    assert parts["answer_ce"] == pytest.approx(expected.item(), rel=1e-4)


def train_on_one_fact(lm, net, config: TrainConfig, lr: float, steps: int) -> list[float]:
    """The loss of each of `steps` Adam steps of `net` on one single-fact document."""
    prompt, doc = one_fact(lm, config.top_k)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss, _ = distillation_loss(lm, net, prompt, doc, [], config, random.Random(0))
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return losses


def test_checkpoint_round_trip_and_wrong_model_refused(tiny_lm, tmp_path: Path):
    net = make_net(tiny_lm, nonzero_b=True)
    save_hypernet(tmp_path / "ck", net, tiny_lm.fingerprint, {"step": 3}, dtype=torch.float16)
    loaded, meta, _ = load_hypernet(tmp_path / "ck", tiny_lm.fingerprint)
    assert meta["step"] == 3 and loaded.config == net.config
    for (name, a), (_, b) in zip(net.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=2e-3, rtol=2e-3), name
    with pytest.raises(LoracleError, match="another base model"):
        load_hypernet(tmp_path / "ck", "0" * 16)


def test_training_resumes_from_its_checkpoint(tiny_lm, tmp_path: Path):
    config = TrainConfig(
        steps=2, mix="multi", max_doc_tokens=48, questions_per_doc=1, rank=2, width=16, interference=0
    )  # data generated as training goes, without a cached set
    first = Trainer(tiny_lm, config, tmp_path / "run")
    first.run(2)
    resumed = Trainer(tiny_lm, config, tmp_path / "run")
    assert resumed.step == 2 and len(resumed.history) == 2
    resumed.run(3)
    assert resumed.step == 3 and [h["step"] for h in resumed.history] == [1, 2, 3]
    again = Trainer(tiny_lm, config, tmp_path / "run").net.state_dict()
    assert all(torch.equal(v, again[k]) for k, v in resumed.net.state_dict().items())


def test_learner_learns_answers_and_round_trips(tiny_lm, tmp_path: Path):
    engine = DocToLora(tiny_lm, make_net(tiny_lm, nonzero_b=True), chunk_tokens=16)
    learner = HypernetLearner(tiny_lm, HypernetConfig(max_new_tokens=4), engine=engine)
    report = learner.learn([DOC])
    assert report.details["chunks"] == len(learner.chunks) > 1 and report.bytes_on_disk > 0
    answer = learner.answer("Who founded the Kestrel Valley Observatory?")
    assert isinstance(answer.text, str) and answer.citations and answer.citations[0].doc_id == DOC.id
    learner.save(tmp_path / "learned")
    other = HypernetLearner(tiny_lm, engine=engine)
    other.load(tmp_path / "learned")
    assert [c.text for c in other.chunks] == [c.text for c in learner.chunks]
    for x, y in zip(other.chunks, learner.chunks, strict=True):
        assert all(torch.equal(x.lora[k][1], y.lora[k][1]) for k in x.lora)
    with pytest.raises(DocumentError):
        learner.learn([Document.from_text("   ", title="empty")])


def test_a_question_about_nothing_learned_gets_the_base_model(tiny_lm):
    from loracle.model import GenerationConfig, generate_chat, question_messages

    net = make_net(tiny_lm, nonzero_b=True)
    with torch.no_grad():
        for b in net.bias_b.values():
            b.normal_(0, 3.0)  # a bias LoRA strong enough to change the tiny model's greedy reply
    engine = DocToLora(tiny_lm, net, chunk_tokens=16)
    learner = HypernetLearner(tiny_lm, HypernetConfig(max_new_tokens=6), engine=engine)
    learner.learn([DOC])
    question = "Quelle heure est-il maintenant?"
    config = GenerationConfig(max_new_tokens=6)
    base = generate_chat(tiny_lm, question_messages(question), config)
    with hooked(tiny_lm.model, engine.bias()):  # the bias LoRA alone would change the reply
        assert generate_chat(tiny_lm, question_messages(question), config) != base
    answer = learner.answer(question)
    assert answer.text == base and not answer.citations
    assert learner.route("Which river is the longest in Europe?") == []  # shares only "river" with DOC
    assert learner.route("Who founded the Kestrel Valley Observatory?")


def test_peft_export_gives_the_same_logits_as_loracle(tiny_lm, tmp_path: Path):
    from peft import PeftModel

    engine = DocToLora(tiny_lm, make_net(tiny_lm, nonzero_b=True), chunk_tokens=16)
    learner = HypernetLearner(tiny_lm, engine=engine)
    report = learner.compile_document(DOC, tmp_path / "adapter")
    base = logits(tiny_lm)
    with hooked(tiny_lm.model, engine.combine(engine.internalise(DOC.text))):
        ours = logits(tiny_lm)
    assert not torch.allclose(base, ours)
    peft_model = PeftModel.from_pretrained(tiny_lm.model, str(tmp_path / "adapter"))
    ids = torch.tensor([tiny_lm.tokenizer.encode("Who founded the observatory?")])
    with torch.no_grad():
        theirs = peft_model(input_ids=ids).logits
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert report.details["rank"] == 2 + 4 * report.details["chunks"]
    keys = AdapterManifest.read(tmp_path / "adapter").routing_keys  # `ask --kb` routes by its sentences
    assert keys[:2] == [
        "The Kestrel Valley Observatory was founded by Ilse Marrow in 1987.",
        "Kestrel Corra powers the station.",  # a "The river"-like reference: the title
    ]
    assert keys[-1] == "1987 corra founded ilse kestrel marrow observatory powers river station valley"


def test_fictional_data_is_fresh_and_answerable():
    rng = random.Random(7)
    samples = [fictional_sample(rng, parts=2) for _ in range(20)]
    assert len({s.text for s in samples}) == 20
    for sample in samples:
        for question, answers in sample.qa:
            assert question.endswith("?") and answers[0] in sample.text


def test_text_mode_turns_a_task_description_into_one_adapter(tiny_lm):
    engine = DocToLora(tiny_lm, make_net(tiny_lm, rank=4, nonzero_b=True))
    lora = engine.task_adapter("Answer every question in one short sentence, in French.")
    a, b = lora["model.layers.0.mlp.down_proj"]
    assert a.shape == (2 + 4, 64) and b.shape == (32, 2 + 4)
    assert b[:, 2:].abs().sum() > 0  # the description's own adapter, after the bias LoRA's two ranks


def test_batched_compile_writes_what_one_at_a_time_writes(tiny_lm, tmp_path: Path):
    from safetensors.torch import load_file

    from loracle.adapters.compiler import BatchDocumentCompiler

    engine = DocToLora(tiny_lm, make_net(tiny_lm, nonzero_b=True), chunk_tokens=16)
    learner = HypernetLearner(tiny_lm, engine=engine)
    assert isinstance(learner, BatchDocumentCompiler)
    docs = [DOC, Document.from_text("Short note on the Corra.", title="Corra"), Document.from_text("x " * 40, "long")]
    reports = learner.compile_documents(docs, [tmp_path / f"b{i}" for i in range(3)])
    for i, doc in enumerate(docs):
        single = learner.compile_document(doc, tmp_path / f"s{i}")
        assert reports[i].doc_id == doc.id and reports[i].tokens == single.tokens
        assert reports[i].details["chunks"] == single.details["chunks"] and reports[i].details["batch"] == 3
        batched, alone = (
            load_file(tmp_path / f"b{i}" / "adapter_model.safetensors"),
            load_file(tmp_path / f"s{i}" / "adapter_model.safetensors"),
        )
        assert batched.keys() == alone.keys()
        assert all(torch.allclose(batched[k], alone[k], atol=1e-5) for k in alone)  # padding changes nothing
    with pytest.raises(DocumentError, match="empty"):
        learner.compile_documents([DOC, Document.from_text(" ", title="blank")], [tmp_path / "e0", tmp_path / "e1"])


def test_the_lr_warms_up_then_decays_by_a_cosine_to_a_tenth_and_stays_there() -> None:
    constant = TrainConfig(lr=1e-3, warmup=10)
    assert learning_rate(constant, 0) == pytest.approx(1e-4) and learning_rate(constant, 5000) == 1e-3
    decayed = TrainConfig(lr=1e-3, warmup=10, decay_steps=110)
    assert learning_rate(decayed, 9) == pytest.approx(1e-3)  # warmed up, not yet decayed
    assert learning_rate(decayed, 60) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # half way down the cosine
    assert learning_rate(decayed, 110) == pytest.approx(1e-4) == learning_rate(decayed, 5000)
    steps = [learning_rate(decayed, s) for s in range(9, 111)]
    assert all(a >= b for a, b in itertools.pairwise(steps))
