"""The dual-MLP variant of ttt: the blend, its decaying alpha, the gate, the rank cut and the PEFT export."""

import copy
from pathlib import Path

import pytest
import torch

from loracle.documents import Document
from loracle.learners.ttt import training
from loracle.learners.ttt.config import TTTConfig
from loracle.learners.ttt.dual import EXPORT_RANK, DualMLP, ExportedDual, blend_alpha, mlp_paths
from loracle.learners.ttt.gating import broad_neuron_mask
from loracle.learners.ttt.learner import TTTLearner
from loracle.learners.ttt.selfstudy import study_examples
from loracle.model import encode_chat, question_messages
from loracle.model.loader import LoadedModel

pytestmark = pytest.mark.usefixtures("one_thread")

DOC = Document.from_text(
    "The Kestrel Valley Observatory was founded by Ilse Marrow in 1987. The river Corra powers the station.",
    "Kestrel Valley Observatory",
    doc_id="kestrel",
)
OTHER = Document.from_text("Port Alder ships amber to Velm every spring.", "Port Alder", doc_id="alder")


def dual_learner(lm: LoadedModel, **options) -> TTTLearner:
    defaults = {
        "variant": "dual_mlp",
        "steps_per_doc": 10,
        "lr": 5e-2,
        "max_sentences": 2,
        "max_new_tokens": 6,
        "precision": "float32",  # the reference, on every machine
    }
    return TTTLearner(lm, TTTConfig(**{"mask_fraction": 0.25, "general_examples": 4, **defaults, **options}))


def logits(lm: LoadedModel, text: str = "Who founded it?") -> torch.Tensor:
    ids = torch.tensor([encode_chat(lm.tokenizer, question_messages(text))])
    with torch.no_grad():
        return lm.model(input_ids=ids).logits


def randomised(dual: DualMLP, rank: int | None = None, seed: int = 0) -> DualMLP:
    """`dual` with random differences D (of rank `rank` when given, else full)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for weight in (dual.gate, dual.up, dual.down):
            if rank is None:
                weight.copy_(torch.randn(weight.shape, generator=generator) * 0.05)
            else:
                left = torch.randn(*weight.shape[:2], rank, generator=generator)
                weight.copy_(left @ torch.randn(weight.shape[0], rank, weight.shape[2], generator=generator) * 0.01)
    return dual


def test_the_blend_is_the_frozen_weights_plus_alpha_times_the_gated_difference(tiny_lm: LoadedModel) -> None:
    learner = dual_learner(tiny_lm)
    dual = randomised(DualMLP(tiny_lm, learner.layers, alpha=0.4))
    broad = torch.zeros_like(dual.keep, dtype=torch.bool)
    broad[:, :5] = True
    dual.set_broad(broad)
    blended = copy.deepcopy(tiny_lm.model)
    with torch.no_grad():
        for slot, layer in enumerate(learner.layers):
            mlp = blended.model.layers[layer].mlp
            keep = dual.keep[slot]
            mlp.gate_proj.weight += 0.4 * dual.gate[slot] * keep[:, None]
            mlp.up_proj.weight += 0.4 * dual.up[slot] * keep[:, None]
            mlp.down_proj.weight += 0.4 * dual.down[slot] * keep[None, :]
    expected = logits(LoadedModel(blended, tiny_lm.tokenizer, "tiny", "memory", tiny_lm.fingerprint))
    base = logits(tiny_lm)
    with dual.hooked(tiny_lm):
        got = logits(tiny_lm)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got, base)
    assert torch.equal(logits(tiny_lm), base)  # the frozen weights never change


def test_a_fresh_copy_equals_the_frozen_mlp(tiny_lm: LoadedModel) -> None:
    dual = DualMLP(tiny_lm, [1], alpha=1.0)
    base = logits(tiny_lm)
    with dual.hooked(tiny_lm):
        assert torch.equal(logits(tiny_lm), base)


def test_alpha_decays_with_every_document_learned(tiny_lm: LoadedModel) -> None:
    assert blend_alpha(0) == 1.0 and all(blend_alpha(k + 1) < blend_alpha(k) for k in range(20))
    learner = dual_learner(tiny_lm, steps_per_doc=2)
    learner.learn([DOC, OTHER])
    first, second = (learner.adapters[d] for d in ("kestrel", "alder"))
    assert isinstance(first, ExportedDual) and (first.alpha, second.alpha) == (blend_alpha(0), blend_alpha(1))


def test_training_lowers_the_loss_and_leaves_the_broad_neurons_frozen(tiny_lm: LoadedModel) -> None:
    learner = dual_learner(tiny_lm, layer_fraction=1.0, steps_per_doc=20, lr=0.3)
    examples = study_examples(tiny_lm, DOC)
    dual = learner.fresh_adapter()
    assert isinstance(dual, DualMLP)
    layers = learner.layers

    def loss() -> float:
        with torch.no_grad(), dual.hooked(tiny_lm):
            return float(training.loss(tiny_lm, examples, layers[0], distill_weight=1.0))

    before = loss()
    training.train(tiny_lm, dual, examples, learner.config)
    assert loss() < 0.98 * before
    broad = broad_neuron_mask(tiny_lm, layers, 0.25)
    deltas = dual.deltas()
    for slot, layer in enumerate(layers):
        gate, up, down = (deltas[p] for p in mlp_paths(layer))
        assert broad[slot].any() and (~broad[slot]).any()
        assert gate[broad[slot]].abs().max() == 0 and down[:, broad[slot]].abs().max() == 0
        assert up[~broad[slot]].abs().max() > 0 and down[:, ~broad[slot]].abs().max() > 0


def test_the_rank_cut_reports_its_error_and_is_exact_for_a_low_rank_blend(tiny_lm: LoadedModel) -> None:
    full = randomised(DualMLP(tiny_lm, [0, 1], alpha=0.5))
    lora, error = full.export()
    with torch.no_grad():
        measured = max(
            float((delta - lora[path][1] @ lora[path][0]).norm() / delta.norm())
            for path, delta in full.deltas().items()
        )
    assert all(a.shape[0] == EXPORT_RANK for a, _ in lora.values())
    assert 0.1 < error == pytest.approx(measured, rel=1e-6)  # a full-rank random blend loses a real share
    low = randomised(DualMLP(tiny_lm, [0, 1], alpha=0.5), rank=EXPORT_RANK // 2)
    assert low.export()[1] < 2e-3  # only half precision's rounding


def test_the_peft_export_answers_as_the_blended_mlp(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    from peft import PeftModel

    learner = dual_learner(tiny_lm)
    dual = randomised(DualMLP(tiny_lm, learner.layers, alpha=0.5), rank=4)
    with dual.hooked(tiny_lm):
        expected = logits(tiny_lm)
    kept = dual.finished()
    learner.export(kept, tmp_path / "adapter", {"doc_id": "kestrel"})
    peft_model = PeftModel.from_pretrained(copy.deepcopy(tiny_lm.model), str(tmp_path / "adapter")).eval()
    got = logits(LoadedModel(peft_model, tiny_lm.tokenizer, "tiny", "memory", tiny_lm.fingerprint))
    assert not torch.allclose(got, logits(tiny_lm))
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)


def test_a_dual_learner_saves_loads_and_answers_the_same(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    learner = dual_learner(tiny_lm)
    report = learner.learn([DOC])
    assert 0 <= report.details["rank_cut_error_max"] < 1
    learner.save(tmp_path / "ck")
    loaded = TTTLearner(tiny_lm)
    loaded.load(tmp_path / "ck")
    assert loaded.config.variant == "dual_mlp" and loaded.documents == ["kestrel"]
    for question in ("Who founded the observatory?", "What powers the station?"):
        assert loaded.answer(question).text == learner.answer(question).text
    assert report.bytes_on_disk == loaded._bytes()
