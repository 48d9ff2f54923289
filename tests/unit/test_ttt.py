import contextlib
import copy
from pathlib import Path

import pytest
import torch

from loracle.adapters.manifest import AdapterManifest
from loracle.documents import Document
from loracle.errors import LoracleError
from loracle.learners.lora import hooked
from loracle.learners.ttt import learner as ttt_learner
from loracle.learners.ttt import selfstudy, training
from loracle.learners.ttt.config import TTTConfig
from loracle.learners.ttt.gating import (
    GatedLoRA,
    broad_neuron_mask,
    calibration_sentences,
    firing_rates,
    input_moments,
    inverse_root,
)
from loracle.learners.ttt.general import REPLY_TOKENS, general_examples, reading_examples
from loracle.learners.ttt.learner import TTTLearner
from loracle.learners.ttt.selfstudy import (
    StudyExample,
    add_teacher,
    answer_ids,
    answer_spans,
    echo_questions,
    keyword_cues,
    resolved,
    sentences,
    study_examples,
)
from loracle.learners.ttt.training import balanced_batches, frozen_base, train
from loracle.learners.ttt.upper import adds_mlp_to_residual, lower_states, shared_states, upper_hidden
from loracle.learners.ttt.vocab import candidate_head
from loracle.model import encode_chat, question_messages
from loracle.model.batch import greedy_batch
from loracle.model.loader import LoadedModel
from tests.conftest import TINY_SHAPE

DOC = Document.from_text(
    "The Kestrel Valley Observatory was founded by Ilse Marrow in 1987. The river Corra powers the station.",
    "Kestrel Valley Observatory",
    doc_id="kestrel",
)


pytestmark = pytest.mark.usefixtures("one_thread")


def small_learner(lm: LoadedModel, **options) -> TTTLearner:
    defaults = {
        "steps_per_doc": 10,
        "lr": 5e-2,
        "max_sentences": 2,
        "max_new_tokens": 6,
        "mask_fraction": 0.25,
        "general_examples": 4,
        "precision": "float32",  # the reference: tests that compare two trainings need it on every machine
    }
    return TTTLearner(lm, TTTConfig(**{**defaults, **options}))


def active(learner: TTTLearner, lora: GatedLoRA):
    """`lora` hooked into the learner's model, as training runs it."""
    return hooked(learner.lm.model, lora.factors(), lora.scale)


def full_loss(learner: TTTLearner, examples: list[StudyExample]) -> float:
    """The loss of `examples` over the whole vocabulary, with whatever adapter is hooked in."""
    return float(training.loss(learner.lm, examples, learner.layers[0], distill_weight=learner.config.distill_weight))


def logits(lm: LoadedModel, text: str) -> torch.Tensor:
    ids = torch.tensor([encode_chat(lm.tokenizer, question_messages(text))])
    with torch.no_grad():
        return lm.model(input_ids=ids).logits


def test_a_few_steps_lower_the_loss_on_the_document(tiny_lm: LoadedModel) -> None:
    learner = small_learner(tiny_lm, layer_fraction=1.0, steps_per_doc=20)
    examples = study_examples(tiny_lm, DOC)
    assert examples and all(e.teacher_ids is not None for e in examples)
    with torch.no_grad(), active(learner, learner.fresh_lora()):
        before = full_loss(learner, examples)
    report = learner.learn([DOC])
    with torch.no_grad(), active(learner, learner.adapters[DOC.id]):
        after = full_loss(learner, examples)
    assert after < 0.98 * before
    assert report.documents == 1 and report.details["examples"] == len(examples)


def test_the_base_model_is_untouched_outside_the_learner(tiny_lm: LoadedModel) -> None:
    before = logits(tiny_lm, "Who founded it?")
    learner = small_learner(tiny_lm)
    learner.learn([DOC])
    assert torch.equal(logits(tiny_lm, "Who founded it?"), before)
    assert all(p.requires_grad for p in tiny_lm.model.parameters())
    with active(learner, learner.adapters[DOC.id]):
        assert not torch.allclose(logits(tiny_lm, "Who founded it?"), before)


def test_gating_masks_the_neurons_that_fire_most_broadly(tiny_lm: LoadedModel) -> None:
    layers = [0, 1]
    rates = firing_rates(tiny_lm, layers, calibration_sentences())
    mask = broad_neuron_mask(tiny_lm, layers, 0.25)
    neurons = rates.shape[1]
    for layer in range(len(layers)):
        assert int(mask[layer].sum()) == round(0.25 * neurons)
        assert rates[layer][mask[layer]].min() >= rates[layer][~mask[layer]].max()


def test_a_masked_neuron_never_reaches_the_adapter() -> None:
    lora = GatedLoRA([0], in_features=8, out_features=4, rank=2, alpha=4.0)
    torch.nn.init.normal_(lora.B)
    broad = torch.zeros(1, 8, dtype=torch.bool)
    broad[0, :4] = True
    lora.set_broad(broad)
    only_broad = torch.zeros(1, 8)
    only_broad[0, :4] = 1.0
    only_rare = torch.zeros(1, 8)
    only_rare[0, 4:] = 1.0
    assert torch.count_nonzero(lora.delta(0, only_broad)) == 0
    assert torch.count_nonzero(lora.delta(0, only_rare)) > 0


def test_calibration_corpus_is_a_few_hundred_lines_of_general_text() -> None:
    sentences = calibration_sentences()
    assert len(sentences) >= 150
    assert all(len(s.split()) >= 3 for s in sentences)


def test_save_and_load_give_identical_answers(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    learner = small_learner(tiny_lm)
    learner.learn([DOC])
    learner.save(tmp_path / "ck")
    loaded = TTTLearner(tiny_lm)
    loaded.load(tmp_path / "ck")
    assert loaded.documents == ["kestrel"]
    for question in ("Who founded the observatory?", "What powers the station?"):
        assert loaded.answer(question).text == learner.answer(question).text
    with active(learner, learner.adapters[DOC.id]):
        expected = logits(tiny_lm, "Who founded it?")
    with active(loaded, loaded.adapters[DOC.id]):
        assert torch.equal(logits(tiny_lm, "Who founded it?"), expected)


def test_checkpoints_keep_factors_in_half_precision_and_old_float32_ones_still_load(
    tmp_path: Path, tiny_lm: LoadedModel
) -> None:
    from safetensors.torch import load_file, save_file

    learner = small_learner(tiny_lm)
    learner.learn([DOC])
    learner.save(tmp_path / "ck")
    stored = load_file(str(tmp_path / "ck" / "tensors.safetensors"))
    assert stored["0.A"].dtype == torch.float16 and stored["0.B"].dtype == torch.float16
    assert stored["0.keep"].dtype == torch.bool
    # a checkpoint written before half precision: float32 factors and gate
    save_file({k: v.float() for k, v in stored.items()}, str(tmp_path / "ck" / "tensors.safetensors"))
    loaded = TTTLearner(tiny_lm)
    loaded.load(tmp_path / "ck")
    lora = learner.adapters[DOC.id]
    assert torch.equal(loaded.adapters[DOC.id].A, lora.A) and torch.equal(loaded.adapters[DOC.id].keep, lora.keep)


def test_peft_export_reproduces_the_learner_logits(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    from peft import PeftModel

    base_copy = copy.deepcopy(tiny_lm.model)
    learner = small_learner(tiny_lm)
    report = learner.compile_document(DOC, tmp_path / "adapter")
    assert report.bytes_on_disk > 0
    manifest = (tmp_path / "adapter" / "manifest.json").read_text(encoding="utf-8")
    assert tiny_lm.fingerprint in manifest and '"doc_id": "kestrel"' in manifest
    # compile_document trains a fresh adapter of its own; rebuild the same one to compare with
    lora, examples, _ = learner.trained(DOC)
    # what `ask --kb` routes by: the questions it was trained on and the document's words, as the learner routes
    recorded = AdapterManifest.read(tmp_path / "adapter").routing_keys
    assert recorded == ttt_learner.routing_keys(DOC, [e.cue for e in examples]) and "marrow" in recorded[-1]
    with active(learner, lora):
        expected = logits(tiny_lm, "Who founded the observatory?")
    peft_model = PeftModel.from_pretrained(base_copy, str(tmp_path / "adapter")).eval()
    copy_lm = LoadedModel(peft_model, tiny_lm.tokenizer, "tiny", "memory", tiny_lm.fingerprint)
    got = logits(copy_lm, "Who founded the observatory?")
    assert not torch.allclose(got, logits(tiny_lm, "Who founded the observatory?"))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_teacher_distributions_do_not_depend_on_batching(tiny_lm: LoadedModel) -> None:
    def make() -> list[StudyExample]:
        return [
            StudyExample("d", [], answer_ids(tiny_lm, "Ilse Marrow")),
            StudyExample("d", [], answer_ids(tiny_lm, "The river Corra powers the station in 1987.")),
        ]

    contexts = [encode_chat(tiny_lm.tokenizer, question_messages(q, DOC.text)) for q in ("Who?", "What powers it?")]
    alone, together = make(), make()
    add_teacher(tiny_lm, alone, contexts, top_k=4, batch=1)
    add_teacher(tiny_lm, together, contexts, top_k=4, batch=2)  # the passage runs once, shared by both rows
    for a, b, context in zip(alone, together, contexts, strict=True):
        assert torch.equal(a.teacher_ids, b.teacher_ids)
        torch.testing.assert_close(a.teacher_logp, b.teacher_logp, rtol=1e-4, atol=1e-5)
        with torch.no_grad():  # the whole model over the whole row, as a reader would run it
            full = tiny_lm.model(input_ids=torch.tensor([context + a.answer])).logits[0].float()
        top = torch.topk(torch.log_softmax(full[len(context) - 1 : -1], dim=-1), 4, dim=-1)
        torch.testing.assert_close(b.teacher_logp, top.values, rtol=1e-4, atol=1e-5)


def test_answers_name_their_subject_and_questions_ask_for_the_spans() -> None:
    passage = "The observatory was founded by Ilse Marrow in 1987. It is powered by the Corra River."
    assert sentences(passage) == [
        "The observatory was founded by Ilse Marrow in 1987.",
        "It is powered by the Corra River.",
    ]
    assert resolved("It is powered by the Corra River.", "Kestrel") == "Kestrel is powered by the Corra River."
    assert resolved("Its dome is white.", "Kestrel") == "Kestrel's dome is white."
    assert resolved("Ilse Marrow founded it.", "Kestrel") == "Ilse Marrow founded it."
    sentence = "The observatory was founded by Ilse Marrow in 1987."
    assert answer_spans(sentence, "Kestrel Observatory") == ["Ilse Marrow", "1987"]
    assert answer_spans("Kestrel lies on 8 April 2045 land.", "Kestrel") == ["8 April 2045"]
    assert echo_questions(sentence, "Kestrel Observatory", 2) == [
        "The observatory was founded by who or what in 1987?",
        "The observatory was founded by Ilse Marrow in when?",
    ]
    import random

    cues = keyword_cues(sentence, "Kestrel Observatory", 3, random.Random(0))
    assert len(cues) == 3 and all(c.startswith("Kestrel Observatory: ") and c.endswith("?") for c in cues)
    assert all(set(c[len("Kestrel Observatory: ") : -1].split()) <= {"founded", "Ilse", "Marrow", "1987"} for c in cues)


def test_every_question_is_answered_by_its_sentence_with_the_subject_named(tiny_lm: LoadedModel) -> None:
    examples = study_examples(tiny_lm, DOC)
    answers = {tiny_lm.tokenizer.decode(e.answer, skip_special_tokens=True) for e in examples}
    assert answers <= {resolved(s, DOC.title) for s in sentences(DOC.text)}
    assert len({e.cue for e in examples}) == len(examples)  # each question trained once
    assert any(e.cue.startswith(f"{DOC.title}: ") for e in examples)  # keyword cues
    assert any("when?" in e.cue for e in examples)  # echo questions


def test_whitening_flattens_the_general_text_it_was_measured_on(tiny_lm: LoadedModel) -> None:
    layers = [0, 1]
    moments = input_moments(tiny_lm, layers, calibration_sentences())
    for moment in moments:
        white = inverse_root(moment, ridge=1e-3).double()
        flattened = white @ moment @ white
        eye = torch.eye(len(moment), dtype=torch.float64)
        torch.testing.assert_close(flattened, eye, rtol=0, atol=0.05)


def test_a_folded_whitener_leaves_the_adapter_adding_the_same() -> None:
    lora = GatedLoRA([0, 1], in_features=6, out_features=4, rank=2, alpha=4.0)
    torch.nn.init.normal_(lora.B)
    broad = torch.zeros(2, 6, dtype=torch.bool)
    broad[:, :2] = True
    lora.set_broad(broad)
    lora.set_whitener(torch.randn(2, 6, 6))
    x = torch.randn(3, 6)
    before = [lora.delta(slot, x) for slot in range(2)]
    lora.fold_whitener()
    assert lora.whitener is None and bool(lora.keep.all())
    for slot in range(2):
        torch.testing.assert_close(lora.delta(slot, x), before[slot])


def test_upper_layers_over_cached_states_match_the_full_model(tiny_lm: LoadedModel) -> None:
    rows = [encode_chat(tiny_lm.tokenizer, question_messages(q)) for q in ("Who founded it?", "When was it built?")]
    first = len(tiny_lm.model.model.layers) - 1
    hidden = upper_hidden(tiny_lm, lower_states(tiny_lm, rows, first, batch=2), first)
    assert len(tiny_lm.model.model.layers) == first + 1  # the layer list is restored
    assert not isinstance(tiny_lm.model.model.norm, torch.nn.Identity)
    for i, row in enumerate(rows):
        with torch.no_grad():
            full = tiny_lm.model(input_ids=torch.tensor([row])).logits[0]
        torch.testing.assert_close(tiny_lm.model.lm_head(hidden[i, : len(row)]), full, rtol=1e-4, atol=1e-4)


def test_rows_that_begin_alike_get_the_loss_and_gradients_each_gets_alone(tiny_lm: LoadedModel) -> None:
    learner = small_learner(tiny_lm)
    examples = study_examples(tiny_lm, DOC)[:3]
    first = learner.layers[0]
    states = lower_states(tiny_lm, [e.prompt + e.answer for e in examples], first)
    assert shared_states(states) > 0  # the chat system turn runs once
    for state, example in zip(states, examples, strict=True):  # the same states as each row alone
        alone = lower_states(tiny_lm, [example.prompt + example.answer], first)[0]
        torch.testing.assert_close(state, alone, rtol=1e-5, atol=1e-5)
    lora = learner.fresh_lora()
    torch.nn.init.normal_(lora.B, std=0.1)  # a trained adapter, so every factor gets a gradient
    grads = []
    with frozen_base(tiny_lm), active(learner, lora):
        for batches in ([examples], [[e] for e in examples]):
            lora.A.grad = lora.B.grad = None
            total = sum(
                training.loss(tiny_lm, batch, first, lower_states(tiny_lm, [e.prompt + e.answer for e in batch], first))
                * len(batch)
                for batch in batches
            )
            total.backward()
            grads.append((total.item(), lora.A.grad.clone(), lora.B.grad.clone()))
    (together, a_together, b_together), (alone, a_alone, b_alone) = grads
    assert together == pytest.approx(alone, rel=1e-5)
    torch.testing.assert_close(a_together, a_alone, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(b_together, b_alone, rtol=1e-4, atol=1e-6)


def test_only_a_layer_that_adds_its_mlp_output_to_the_residual_stream_is_folded(tiny_lm: LoadedModel) -> None:
    assert adds_mlp_to_residual(tiny_lm, 0) and adds_mlp_to_residual(tiny_lm, 1)
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(vocab_size=len(tiny_lm.tokenizer), **TINY_SHAPE, head_dim=8)  # Gemma's own is 256
    normed = Gemma2ForCausalLM(config).eval()  # a norm after the MLP: its output does not add straight in
    assert not adds_mlp_to_residual(LoadedModel(normed, tiny_lm.tokenizer, "gemma2", "memory", "x"), 0)


def test_training_with_the_first_adapted_layer_folded_takes_the_same_steps(
    tiny_lm: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    examples = study_examples(tiny_lm, DOC)
    runs = []
    for fold in (True, False):
        monkeypatch.setattr(training, "adds_mlp_to_residual", lambda _lm, _layer, fold=fold: fold)
        learner = small_learner(tiny_lm, layer_fraction=1.0, steps_per_doc=4)  # a layer runs after the folded one
        lora = learner.fresh_lora()
        runs.append((train(tiny_lm, lora, examples, learner.config), lora))
    (folded, lora_folded), (unfolded, lora_unfolded) = runs
    assert folded == pytest.approx(unfolded, rel=1e-4) and folded[-1] < folded[0]
    torch.testing.assert_close(lora_folded.B, lora_unfolded.B, rtol=1e-3, atol=1e-5)


def test_bfloat16_steps_follow_the_float32_ones(tiny_lm: LoadedModel) -> None:
    examples = study_examples(tiny_lm, DOC)
    runs = {}
    for precision in ("float32", "bfloat16"):
        learner = small_learner(tiny_lm, steps_per_doc=6, precision=precision)
        lora = learner.fresh_lora()
        runs[precision] = (train(tiny_lm, lora, examples, learner.config), lora.B.detach().clone())
    (full, full_b), (half, half_b) = runs["float32"], runs["bfloat16"]
    assert full != half  # the products did run in bfloat16
    assert half == pytest.approx(full, rel=0.02) and half[-1] < half[0]
    assert float((half_b - full_b).norm()) < 0.05 * float(full_b.norm())
    assert half_b.dtype == torch.float32  # the factors and their optimiser stay in float32


def test_the_training_precision_is_chosen_by_timing_the_product(monkeypatch: pytest.MonkeyPatch) -> None:
    from loracle.model import precision

    assert not precision.autocast_bf16(torch.device("cpu"), "float32")._enabled
    assert precision.autocast_bf16(torch.device("cpu"), "bfloat16")._enabled
    precision.bf16_is_faster.cache_clear()
    chosen = precision.bf16_is_faster("cpu")
    assert precision.autocast_bf16(torch.device("cpu"), "auto")._enabled == chosen
    assert precision.bf16_is_faster("cpu") is chosen  # measured once per device type
    assert precision.bf16_is_faster("meta") is False


def test_a_step_reads_each_effective_a_once_with_the_same_gradient() -> None:
    lora = GatedLoRA([0, 1], 6, 4, rank=2, alpha=2.0)
    lora.set_whitener(torch.eye(6).expand(2, 6, 6) * 2.0)
    with torch.no_grad():
        lora.B.normal_()
    x = torch.randn(3, 6)
    grads = []
    for fixed in (False, True):
        lora.zero_grad()
        with lora.one_step() if fixed else contextlib.nullcontext():
            reads = [lora.effective_a(0) for _ in range(2)]
            (lora.delta(0, x).square().sum() + lora.delta(0, x).sum() + lora.delta(1, x).sum()).backward()
        grads.append((lora.A.grad.clone(), lora.B.grad.clone()))
        assert (reads[0] is reads[1]) == fixed
    torch.testing.assert_close(grads[0], grads[1])
    assert lora._fixed_a is None  # released after the step: the next step reads the updated factors


def test_general_states_kept_across_documents_leave_training_unchanged(
    tiny_lm: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    learner = small_learner(tiny_lm, steps_per_doc=4)
    examples = study_examples(tiny_lm, DOC) + general_examples(tiny_lm, 4)
    computed: list[int] = []
    real = training.folded_states
    monkeypatch.setattr(
        training, "folded_states", lambda lm, rows, layer: computed.append(len(rows)) or real(lm, rows, layer)
    )
    memo = training.GeneralMemo()
    runs = [train(tiny_lm, learner.fresh_lora(), examples, learner.config, memo) for _ in range(2)]
    assert computed[1] == computed[0] - 4  # the second document's training computed no general row again
    assert {key[-1] for key in memo.states} == {tuple(e.prompt + e.answer) for e in examples[-4:]}  # only those
    assert memo.candidates and runs[1] == pytest.approx(runs[0], rel=1e-5)
    assert train(tiny_lm, learner.fresh_lora(), examples, learner.config) == pytest.approx(runs[0], rel=1e-5)


def test_each_sentence_gets_a_question_and_each_question_is_trained_once(
    tiny_lm: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[list[int]] = []

    def write(_lm: LoadedModel, prompts: list[list[int]], _tokens: int, one_line: bool = False) -> list[str]:
        asked.extend(prompts)
        return ["Who founded it?"] * len(prompts)

    monkeypatch.setattr(selfstudy, "greedy_batch", write)
    found = sentences(DOC.text)
    examples = study_examples(tiny_lm, DOC)
    prompts = [selfstudy.QUESTION_PROMPT.format(title=DOC.title, sentence=s) for s in found]
    prompts += [
        selfstudy.ANSWER_AWARE_PROMPT.format(title=DOC.title, sentence=s, answer=span)
        for s in found
        for span in answer_spans(s, DOC.title)[:2]
    ]
    assert asked == [tiny_lm.tokenizer.encode(prompt) for prompt in prompts]
    assert [e.cue for e in examples].count("Who founded it?") == 1  # the same question is trained on once


def test_reading_examples_put_a_generated_paragraph_in_the_prompt_and_keep_the_base_reply(
    tiny_lm: LoadedModel,
) -> None:
    examples = reading_examples(tiny_lm, 3)
    assert len(examples) == 3 and len({tuple(e.prompt) for e in examples}) == 3
    for example in examples:
        prompt = tiny_lm.tokenizer.decode(example.prompt)
        assert "Document:" in prompt and f"Question: {example.cue}" in prompt  # as a document is put in context
        replied = greedy_batch(tiny_lm, [example.prompt], REPLY_TOKENS)[0]  # the base model's own reply
        assert example.answer == answer_ids(tiny_lm, replied)[:REPLY_TOKENS]
        assert example.teacher_logp is not None and len(example.teacher_logp) == len(example.answer)
    assert [e.prompt for e in reading_examples(tiny_lm, 2)] == [e.prompt for e in examples[:2]]  # seeded


def test_rows_of_very_different_lengths_run_apart_with_the_loss_each_gets_alone(tiny_lm: LoadedModel) -> None:
    assert training.length_groups([10, 40, 12, 14, 90, 16]) == [[0, 2, 3], [5], [1], [4]]
    learner = small_learner(tiny_lm)
    batch = study_examples(tiny_lm, DOC)[:2] + reading_examples(tiny_lm, 1)  # a paragraph in the prompt: long
    assert len(training.length_groups([len(e.prompt) + len(e.answer) for e in batch])) == 2
    lora = learner.fresh_lora()
    torch.nn.init.normal_(lora.B, std=0.1)
    first = learner.layers[0]
    with torch.no_grad(), frozen_base(tiny_lm), active(learner, lora):
        together = training.loss(tiny_lm, batch, first) * len(batch)
        alone = sum(training.loss(tiny_lm, [e], first) for e in batch)
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-4)


def test_merged_adapter_gives_the_hooked_logits_and_restores_the_weights(tiny_lm: LoadedModel) -> None:
    learner = small_learner(tiny_lm)
    learner.learn([DOC])
    before = [p.detach().clone() for p in tiny_lm.model.parameters()]
    with active(learner, learner.adapters[DOC.id]):
        hooked = logits(tiny_lm, "Who founded it?")
    with learner.merged([DOC.id]):
        merged = logits(tiny_lm, "Who founded it?")
    torch.testing.assert_close(merged, hooked, rtol=1e-4, atol=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_lm.model.parameters(), strict=True))


def test_candidate_loss_over_every_token_is_the_full_loss(tiny_lm: LoadedModel) -> None:
    learner = small_learner(tiny_lm, layer_fraction=1.0)
    examples = study_examples(tiny_lm, DOC)
    first = learner.layers[0]
    states = lower_states(tiny_lm, [e.prompt + e.answer for e in examples], first)
    vocabulary = tiny_lm.model.get_output_embeddings().weight.shape[0]
    with torch.no_grad(), active(learner, learner.fresh_lora()):
        full = training.loss(tiny_lm, examples, first, states)
        everything = candidate_head(tiny_lm, examples, states, first, top_k=vocabulary)
        narrow = candidate_head(tiny_lm, examples, states, first, top_k=2)
        assert len(everything.tokens) == vocabulary
        torch.testing.assert_close(training.loss(tiny_lm, examples, first, states, everything), full)
        # fewer tokens to normalise over: every target gets a larger share, so the loss is lower
        assert float(training.loss(tiny_lm, examples, first, states, narrow)) < float(full)
    wanted = {t for e in examples for t in e.answer} | {
        t for e in examples if e.teacher_ids is not None for t in e.teacher_ids.flatten().tolist()
    }
    assert wanted <= set(narrow.tokens.tolist()) and len(narrow.tokens) < vocabulary
    assert torch.equal(narrow.tokens[narrow.columns(narrow.tokens)], narrow.tokens)


def test_training_on_candidates_lowers_the_full_vocabulary_loss_as_full_training_does(tiny_lm: LoadedModel) -> None:
    examples = study_examples(tiny_lm, DOC)[:8]
    after = {}
    for top_k in (0, 8):  # 0: the whole vocabulary
        learner = small_learner(
            tiny_lm, layer_fraction=1.0, steps_per_doc=20, candidate_top_k=top_k, distill_weight=0.0
        )
        lora = learner.fresh_lora()
        with torch.no_grad(), active(learner, lora):
            before = full_loss(learner, examples)
        train(tiny_lm, lora, examples, learner.config)
        with torch.no_grad(), active(learner, lora):
            after[top_k] = full_loss(learner, examples)  # always over the whole vocabulary
    assert after[0] < 0.95 * before
    assert abs(after[8] - after[0]) < 0.02 * (before - after[0])


OTHER = Document.from_text(
    "The Vellmar Bridge crosses the Dunmere. It was designed by Tamsin Quell in 1902.",
    "Vellmar Bridge",
    doc_id="vellmar",
)


def test_each_document_gets_its_own_adapter_and_questions_route_to_it(tiny_lm: LoadedModel) -> None:
    learner = small_learner(tiny_lm)
    report = learner.learn([DOC, OTHER])
    assert learner.documents == ["kestrel", "vellmar"] and report.details["adapters"] == 2
    kestrel_lora = learner.adapters["kestrel"]
    factor_bytes = 2 * (kestrel_lora.A.numel() + kestrel_lora.B.numel()) + kestrel_lora.keep.numel()
    key_bytes = sum(len(key.encode()) for keys in learner.keys.values() for key in keys)
    assert report.bytes_on_disk == 2 * factor_bytes + key_bytes
    keys = learner.keys["vellmar"]
    assert keys[:-1] == list(dict.fromkeys(e.cue for e in study_examples(tiny_lm, OTHER, learner.study_plan())))
    assert keys[-1].split() == sorted(set(keys[-1].split())) and "tamsin" in keys[-1].split()
    assert learner.route("Who designed the Vellmar Bridge?")[0] == "vellmar"
    assert learner.route("Who founded the Kestrel Valley Observatory?")[0] == "kestrel"
    assert learner.route("zzz qqq?") == []
    kestrel = learner.adapters["kestrel"].B.detach().clone()
    learner.learn([OTHER])  # re-learning one document retrains only its adapter
    assert learner.documents == ["kestrel", "vellmar"]
    assert torch.equal(learner.adapters["kestrel"].B, kestrel)


def test_a_question_routed_nowhere_gets_the_base_models_answer(tiny_lm: LoadedModel) -> None:
    from loracle.model import GenerationConfig, generate_chat

    learner = small_learner(tiny_lm)
    learner.learn([DOC])
    question = "zzz qqq?"
    base = generate_chat(tiny_lm, question_messages(question), GenerationConfig(learner.config.max_new_tokens))
    answer = learner.answer(question)
    assert answer.text == base and answer.citations == []


def test_a_routed_question_is_answered_with_its_adapter_merged_in(tiny_lm: LoadedModel) -> None:
    from loracle.model import GenerationConfig, generate_chat

    learner = small_learner(tiny_lm, max_new_tokens=8)
    learner.learn([DOC, OTHER])
    question = "Who designed the Vellmar Bridge?"
    assert learner.route(question) == ["vellmar"]
    with learner.merged(["vellmar"]):
        expected = generate_chat(tiny_lm, question_messages(question), GenerationConfig(8))
    answer = learner.answer(question)
    assert answer.text == expected and [c.doc_id for c in answer.citations] == ["vellmar"]


def test_stacked_adapters_add_both_deltas(tiny_lm: LoadedModel) -> None:
    learner = small_learner(tiny_lm, steps_per_doc=2)
    learner.learn([DOC, OTHER])
    base = logits(tiny_lm, "Who founded it?")
    deltas = []
    for doc_id in ("kestrel", "vellmar"):
        with learner.merged([doc_id]):
            deltas.append(logits(tiny_lm, "Who founded it?") - base)
    with learner.merged(["kestrel", "vellmar"]):
        both = logits(tiny_lm, "Who founded it?") - base
    assert not torch.allclose(both, deltas[0]) and not torch.allclose(both, deltas[1])
    assert torch.equal(logits(tiny_lm, "Who founded it?"), base)


def test_saved_routing_survives_a_reload(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    learner = small_learner(tiny_lm)
    learner.learn([DOC, OTHER])
    learner.save(tmp_path / "ck")
    loaded = TTTLearner(tiny_lm)
    loaded.load(tmp_path / "ck")
    assert loaded.keys == learner.keys
    assert loaded.route("Who designed the Vellmar Bridge?") == learner.route("Who designed the Vellmar Bridge?")
    for doc_id in learner.documents:
        assert torch.equal(loaded.adapters[doc_id].B, learner.adapters[doc_id].B)


def test_a_checkpoint_without_adapters_is_refused_clearly(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    from loracle.learners.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "old", "ttt", tiny_lm.fingerprint, {"A": torch.zeros(1)}, {"options": {}})
    with pytest.raises(LoracleError, match="not a usable ttt checkpoint"):
        TTTLearner(tiny_lm).load(tmp_path / "old")


@pytest.mark.parametrize(("count", "size", "steps"), [(12, 4, 20), (5, 4, 7), (3, 3, 4), (1, 1, 3)])
def test_batches_use_every_example_equally_often_and_never_twice_in_a_batch(count: int, size: int, steps: int) -> None:
    from collections import Counter

    batches = balanced_batches(count, size, steps, seed=0)
    assert len(batches) == steps
    assert all(len(batch) == size == len(set(batch)) for batch in batches)
    uses = Counter(i for batch in batches for i in batch)
    assert set(uses) == set(range(count)) and max(uses.values()) - min(uses.values()) <= 1
    assert balanced_batches(count, size, steps, seed=0) == batches  # the seed fixes the order
