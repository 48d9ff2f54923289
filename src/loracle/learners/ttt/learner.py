"""The `ttt` learner (test-time training): gradient steps write each document into an adapter that answers.

Each document gets a LoRA of its own on the MLP down projections of the upper layers, its inputs whitened by
general text (gating.py), trained (training.py) to answer the questions about the document the model and a
few rules write, each with the sentence that answers it (selfstudy.py), and to give the base model's own
reply to general prompts (general.py). One adapter per document, not one for all: documents learned into one
shared adapter garble each other, and re-learning one document retains only its own.

Answering: a question is routed (routing.KeyRouter) to the adapters whose keys cover enough of it, or hold a
question close to it in meaning (the questions each was trained on and its document's distinct words); they
are merged into the base weights and the model answers in one decode, the question as the only message. When
none is routed, the base model answers alone. No document is shown: the answer comes from weights. The adapter
`compile_document` writes is the same adapter, so a plain PEFT load answers as this learner does.

The base model is never modified: adapters are hooked in only while the learner trains, merged in only while
it answers (learners.lora), so other learners can share the loaded model. How each default was chosen:
docs/experiments/ttt.md.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from loracle.adapters.compiler import CompileReport
from loracle.bundled import general_prompts
from loracle.documents import Document
from loracle.errors import LoracleError
from loracle.learners.base import Answer, Citation, LearnReport
from loracle.learners.checkpoint import load_checkpoint, save_checkpoint, stored_config
from loracle.learners.lora import concat_ranks, merged, write_peft
from loracle.learners.ttt.config import TTTConfig
from loracle.learners.ttt.dual import DualMLP, ExportedDual, blend_alpha
from loracle.learners.ttt.gating import STORAGE_DTYPE, GatedLoRA, down_projections
from loracle.learners.ttt.general import general_examples, reading_examples
from loracle.learners.ttt.selfstudy import StudyExample, StudyPlan, resolved, sentences, study_examples
from loracle.learners.ttt.training import GeneralMemo, train
from loracle.model import GenerationConfig, LoadedModel, generate_chat, question_messages
from loracle.model.precision import autocast_bf16
from loracle.routing import KeyRouter, words
from loracle.search.embedder import default_embedder

#: a trained adapter as the learner keeps it: a LoRA with `factors()` and `scale`
Kept = GatedLoRA | ExportedDual


class TTTLearner:
    """Self-study + per-document LoRA test-time training; see the module docstring."""

    name = "ttt"

    def __init__(self, lm: LoadedModel, config: TTTConfig | None = None) -> None:
        self.lm = lm
        self.config = config or TTTConfig()
        downs = down_projections(lm.model)
        first = len(downs) - max(1, round(self.config.layer_fraction * len(downs)))
        self.layers = list(range(first, len(downs)))
        self._shape = (downs[0].in_features, downs[0].out_features)
        self.memo = GeneralMemo()  # what every document's training computes alike for the general examples
        self.reset()

    def reset(self) -> None:
        self.adapters: dict[str, Kept] = {}  # document id -> its adapter, in learning order
        self.keys: dict[str, list[str]] = {}  # document id -> what routes a question to its adapter
        self.router = KeyRouter([])

    @property
    def documents(self) -> list[str]:
        return list(self.adapters)

    def fresh_lora(self) -> GatedLoRA:
        """A new adapter for this model's adapted layers, initialised from the config's seed."""
        torch.manual_seed(self.config.seed)
        return GatedLoRA(self.layers, *self._shape, self.config.rank, self.config.alpha).to(self.lm.device)

    def fresh_adapter(self) -> GatedLoRA | DualMLP:
        """A new adapter of the config's variant; a dual MLP's alpha decays with the documents held already."""
        if self.config.variant == "dual_mlp":
            return DualMLP(self.lm, self.layers, blend_alpha(len(self.adapters)))
        return self.fresh_lora()

    def study_plan(self) -> StudyPlan:
        """How many questions of each kind the config asks for."""
        c = self.config
        return StudyPlan(
            max_sentences=c.max_sentences,
            answer_spans=c.answer_spans,
            keyword_cues=c.keyword_cues,
            passage_tokens=c.passage_tokens,
        )

    def study(self, doc: Document) -> list[StudyExample]:
        """The self-study pairs about `doc` its adapter trains on, written and distilled in the training steps'
        `precision` (where bfloat16 is faster it also writes nearly the same questions and teacher: ttt.md)."""
        with autocast_bf16(self.lm.device, self.config.precision):
            return study_examples(self.lm, doc, self.study_plan())

    def trained(self, doc: Document) -> tuple[Kept, list[StudyExample], list[float]]:
        """`doc` learned into a fresh adapter, as the learner keeps it (`finished`: a LoRA, rounded as it is
        stored): the adapter, the document's self-study pairs, and each training step's loss."""
        studied = self.study(doc)
        adapter = self.fresh_adapter()
        general = general_examples(self.lm, self.config.general_examples)
        general += reading_examples(self.lm, self.config.general_reading)
        losses = train(self.lm, adapter, studied + general, self.config, self.memo)
        return adapter.finished(), studied, losses

    # -- learning -------------------------------------------------------------------------------------------
    def learn(self, docs: Sequence[Document]) -> LearnReport:
        """Each document into a fresh adapter of its own (re-learning a document replaces its adapter)."""
        start = time.perf_counter()
        new = [d for d in docs if d.text.strip()]
        examples, first_losses, last_losses, cut_errors = 0, [], [], []
        for doc in new:
            lora, studied, losses = self.trained(doc)
            self.adapters.pop(doc.id, None)
            self.adapters[doc.id] = lora
            self.keys[doc.id] = routing_keys(doc, [e.cue for e in studied])
            examples += len(studied)
            if isinstance(lora, ExportedDual):
                cut_errors.append(lora.error)
            if losses:
                first_losses.append(losses[0])
                last_losses.append(losses[-1])
        self._route_all()
        return LearnReport(
            self.name,
            len(new),
            sum(len(self.lm.tokenizer.encode(d.text)) for d in new),
            time.perf_counter() - start,
            bytes_on_disk=self._bytes(),
            details={
                "examples": examples,
                "adapters": len(self.adapters),
                "loss_first": sum(first_losses) / len(first_losses) if first_losses else None,
                "loss_last": sum(last_losses) / len(last_losses) if last_losses else None,
                **({"rank_cut_error_max": max(cut_errors)} if cut_errors else {}),
            },
        )

    def _route_all(self) -> None:
        embedder = default_embedder() if self.config.min_similarity is not None else None
        background = general_prompts() if self.config.leave_general else []
        self.router = KeyRouter([self.keys[doc_id] for doc_id in self.adapters], embedder, background)

    def route(self, question: str) -> list[str]:
        """The documents whose keys cover at least `min_coverage` of the question's words or hold a question
        `min_similarity` close to it, best first (at most `route_top_k`); [] when none does."""
        ids, c = list(self.adapters), self.config
        return [ids[m.index] for m in self.router.route(question, c.route_top_k, c.min_coverage, c.min_similarity)]

    # -- answering ------------------------------------------------------------------------------------------
    def merged(self, doc_ids: Sequence[str]) -> contextlib.AbstractContextManager[None]:
        """The adapters of `doc_ids` merged into the base weights (restored exactly after); none: the base."""
        if not doc_ids:
            return contextlib.nullcontext()
        loras = [self.adapters[doc_id] for doc_id in doc_ids]
        stacked = concat_ranks([{p: (a * lora.scale, b) for p, (a, b) in lora.factors().items()} for lora in loras])
        return merged(self.lm.model, stacked)

    def answer(self, question: str) -> Answer:
        """Closed-book answer: the routed adapters merged in, the question asked bare, one decode."""
        start = time.perf_counter()
        routed = self.route(question)
        with torch.no_grad(), self.merged(routed):
            text = generate_chat(self.lm, question_messages(question), GenerationConfig(self.config.max_new_tokens))
        citations = [Citation(doc_id, doc_id, snippet="answered from its adapter") for doc_id in routed]
        return Answer(text, citations, time.perf_counter() - start)

    # -- one document as a PEFT adapter ---------------------------------------------------------------------
    def compile_document(self, doc: Document, folder: Path) -> CompileReport:
        """Learn `doc` alone into a fresh adapter and write it as a PEFT adapter folder (atomically), with the
        keys that route questions to it in its manifest."""
        start = time.perf_counter()
        lora, studied, losses = self.trained(doc)
        keys = routing_keys(doc, [e.cue for e in studied])
        size = self.export(
            lora, folder, {"doc_id": doc.id, "doc_hash": doc.hash, "title": doc.title, "routing_keys": keys}
        )
        return CompileReport(
            doc.id,
            time.perf_counter() - start,
            len(self.lm.tokenizer.encode(doc.text)),
            size,
            {"examples": len(studied), "loss_first": losses[0], "loss_last": losses[-1]} if losses else {},
        )

    def export(self, lora: Kept, folder: Path, manifest: dict[str, Any]) -> int:
        """Write `lora` as a PEFT adapter folder, in the half precision it was rounded to (no loss); returns the
        weight file's bytes."""
        return write_peft(
            folder,
            lora.factors(),
            scale=lora.scale,
            base_model=self.lm.name,
            dtype=STORAGE_DTYPE,
            manifest={
                "base_fingerprint": self.lm.fingerprint,
                "learner": self.name,
                "config": self.config.model_dump(),
                **manifest,
            },
        )

    # -- checkpoints ----------------------------------------------------------------------------------------
    def _bytes(self) -> int:
        """What `save` writes for the adapters: their factors, gates (a byte per neuron) and routing keys."""
        width = torch.finfo(STORAGE_DTYPE).bits // 8
        factors = sum(a.numel() + b.numel() for lora in self.adapters.values() for a, b in lora.factors().values())
        gates = sum(lora.keep.numel() for lora in self.adapters.values() if isinstance(lora, GatedLoRA))
        return factors * width + gates + sum(len(key.encode()) for keys in self.keys.values() for key in keys)

    def save(self, path: Path) -> None:
        """Every document's adapter and its routing keys, in one checkpoint: a gated LoRA as tensors `<i>.A`, `<i>.B`
        in STORAGE_DTYPE and `<i>.keep` as bool; a dual MLP's LoRA as `<i>.<module path>.A` / `.B`."""
        tensors: dict[str, torch.Tensor] = {}
        records = []
        for i, (doc_id, lora) in enumerate(self.adapters.items()):
            record: dict[str, Any] = {"doc_id": doc_id, "keys": self.keys[doc_id]}
            if isinstance(lora, GatedLoRA):
                tensors |= {f"{i}.A": lora.A.to(STORAGE_DTYPE), f"{i}.B": lora.B.to(STORAGE_DTYPE)}
                tensors[f"{i}.keep"] = lora.keep.bool()
                record["gated"] = lora.gated
            else:
                for module, (a, b) in lora.factors().items():
                    tensors |= {f"{i}.{module}.A": a.to(STORAGE_DTYPE), f"{i}.{module}.B": b.to(STORAGE_DTYPE)}
                record |= {"dual": list(lora.factors()), "error": lora.error, "alpha": lora.alpha}
            records.append(record)
        meta = {"layers": self.layers, "adapters": records}
        save_checkpoint(path, self.name, self.lm.fingerprint, tensors, meta, self.config)

    def load(self, path: Path) -> None:
        tensors, meta = load_checkpoint(path, self.name, self.lm.fingerprint)
        config = stored_config(path, self.name, meta)
        adapters: dict[str, Kept] = {}
        keys: dict[str, list[str]] = {}
        try:
            for i, record in enumerate(meta["adapters"]):
                adapters[str(record["doc_id"])] = self._loaded(tensors, i, record, meta["layers"], config)
                keys[str(record["doc_id"])] = [str(k) for k in record["keys"]]
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise LoracleError(f"{path}: not a usable ttt checkpoint ({exc!r}; saved by an older loracle?)") from exc
        self.config = config
        self.layers = list(meta["layers"])
        self.adapters, self.keys = adapters, keys
        self._route_all()

    def _loaded(
        self, tensors: dict[str, torch.Tensor], i: int, record: dict[str, Any], layers: list[int], config: TTTConfig
    ) -> Kept:
        """Adapter `i` of a checkpoint's tensors, as `save` wrote it."""
        if "dual" in record:
            device = self.lm.device
            lora = {
                m: (tensors[f"{i}.{m}.A"].float().to(device), tensors[f"{i}.{m}.B"].float().to(device))
                for m in record["dual"]
            }
            return ExportedDual(list(layers), lora, float(record["error"]), float(record["alpha"]))
        gated = GatedLoRA(layers, *self._shape, config.rank, config.alpha)
        gated.A.data.copy_(tensors[f"{i}.A"])
        gated.B.data.copy_(tensors[f"{i}.B"])
        gated.keep.copy_(tensors[f"{i}.keep"])  # bool (or float32 in older checkpoints) -> float32
        gated.gated = bool(record["gated"])
        return gated.to(self.lm.device)


def routing_keys(doc: Document, questions: Sequence[str]) -> list[str]:
    """What routes a question to `doc`'s adapter: the questions it was trained on, then the document's distinct
    words."""
    return [*dict.fromkeys(q for q in questions if q), " ".join(sorted(set(words(doc.text))))]


def sentence_keys(doc: Document) -> list[str]:
    """routing_keys for an adapter trained on no questions (the one-pass learners'): each of the document's
    sentences (its title in place of a leading pronoun), which a question is close to in meaning."""
    return routing_keys(doc, [resolved(sentence, doc.title) for sentence in sentences(doc.text)])
