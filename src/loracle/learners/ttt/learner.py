"""The `ttt` learner (test-time training): gradient steps write each document into a gated LoRA of its own.

Each document gets an adapter on the MLP down projections of the upper layers, its inputs from the neurons
that fire broadly on general text masked (gating.py), trained (training.py) to recite the document's passages
when cued by questions the model wrote about them, their sentence openings or the title (selfstudy.py).
One adapter per document, not one for all: documents learned into one shared adapter garble each other, and
re-learning one document retrains only its own.

Answering: a question is routed (routing.ChunkRouter) to the adapters whose keys match it (the cues each was
trained on and its document's distinct words); each routed adapter recites what it learned about the
question, and the best-routed one also from its title cue; the recitations that are about the question go in
context and the base model answers from them. When none is, the base model answers alone, so questions
about anything else get the base model's answer. No document is shown: the recited text comes from weights.

The base model is never modified: adapters are hooked in only while the learner trains, merged in only while
it recites (learners.lora), so other learners can share the loaded model. `compile_document` exports one
document's adapter as a plain PEFT folder (gate folded into lora_A). How each default was chosen:
docs/experiments/ttt.md.
"""

from __future__ import annotations

import contextlib
import difflib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from loracle.adapters.compiler import CompileReport
from loracle.documents import Document
from loracle.errors import LoracleError
from loracle.learners.base import Answer, Citation, LearnReport
from loracle.learners.checkpoint import load_checkpoint, save_checkpoint, stored_config
from loracle.learners.lora import merged, write_peft
from loracle.learners.ttt.config import TTTConfig
from loracle.learners.ttt.gating import STORAGE_DTYPE, GatedLoRA, down_projections
from loracle.learners.ttt.selfstudy import StudyExample, recall_messages, recitation_fits, study_examples, title_cue
from loracle.learners.ttt.training import train
from loracle.model import GenerationConfig, LoadedModel, generate_chat, question_messages
from loracle.routing import ChunkRouter, words
from loracle.sources.chunking import chunk_document


class TTTLearner:
    """Self-study + gated LoRA test-time training; see the module docstring."""

    name = "ttt"

    def __init__(self, lm: LoadedModel, config: TTTConfig | None = None) -> None:
        self.lm = lm
        self.config = config or TTTConfig()
        downs = down_projections(lm.model)
        first = len(downs) - max(1, round(self.config.layer_fraction * len(downs)))
        self.layers = list(range(first, len(downs)))
        self._shape = (downs[0].in_features, downs[0].out_features)
        self.reset()

    def reset(self) -> None:
        self.adapters: dict[str, GatedLoRA] = {}  # document id -> its adapter, in learning order
        self.keys: dict[str, list[str]] = {}  # document id -> what routes a question to its adapter
        self.title_cues: dict[str, str] = {}  # document id -> the cue its adapter recites all of it from
        self.title_recitations: dict[str, str] = {}  # document id -> what it recited from its title cue, once asked
        self.router = ChunkRouter([])

    @property
    def documents(self) -> list[str]:
        return list(self.adapters)

    def fresh_lora(self) -> GatedLoRA:
        """A new adapter for this model's adapted layers, initialised from the config's seed."""
        torch.manual_seed(self.config.seed)
        return GatedLoRA(self.layers, *self._shape, self.config.rank, self.config.alpha).to(self.lm.device)

    def study(self, doc: Document) -> list[StudyExample]:
        """The self-study pairs `doc`'s adapter trains on."""
        c = self.config
        return study_examples(
            self.lm, doc, passage_tokens=c.passage_tokens, max_questions=c.max_questions, qa_pairs=c.qa_pairs
        )

    # -- learning -------------------------------------------------------------------------------------------
    def learn(self, docs: Sequence[Document]) -> LearnReport:
        """Each document into a fresh adapter of its own (re-learning a document replaces its adapter)."""
        start = time.perf_counter()
        new = [d for d in docs if d.text.strip()]
        study_s = 0.0
        examples, first_losses, last_losses = 0, [], []
        for doc in new:
            study_start = time.perf_counter()
            studied = self.study(doc)
            study_s += time.perf_counter() - study_start
            lora = self.fresh_lora()
            losses = train(self.lm, lora, studied, self.config)
            lora.round_to_storage()
            self.adapters.pop(doc.id, None)
            self.adapters[doc.id] = lora
            self.keys[doc.id] = routing_keys(doc, studied)
            self.title_cues.pop(doc.id, None)
            self.title_recitations.pop(doc.id, None)
            if len(chunk_document(doc, self.config.passage_tokens)) == 1:  # a longer one's title cue recites any part
                self.title_cues[doc.id] = title_cue(doc.title)
            examples += len(studied)
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
                "study_seconds": round(study_s, 2),
                "train_seconds": round(time.perf_counter() - start - study_s, 2),
                "loss_first": sum(first_losses) / len(first_losses) if first_losses else None,
                "loss_last": sum(last_losses) / len(last_losses) if last_losses else None,
            },
        )

    def _route_all(self) -> None:
        self.router = ChunkRouter([" ".join(self.keys[doc_id]) for doc_id in self.adapters])

    def route(self, question: str) -> list[str]:
        """The documents whose keys best match the question, best first (at most `route_top_k`); [] when the
        question shares no word with any of them."""
        ids = list(self.adapters)
        return [ids[i] for i in self.router.top(question, self.config.route_top_k, min_coverage=0.0)]

    # -- answering ------------------------------------------------------------------------------------------
    def merged(self, lora: GatedLoRA) -> contextlib.AbstractContextManager[None]:
        """`lora` merged into the base weights (restored exactly after): a recitation decodes hundreds of tokens."""
        return merged(self.lm.model, lora.factors(), lora.scale)

    def answer(self, question: str) -> Answer:
        """Closed-book answer. With `recite`, each routed adapter recites what it learned about the question;
        the base model then answers from the recitations that are about it, as it would from documents (the
        adapter, trained to recite, would recite again). When none is, the base model answers alone. Without
        `recite`, the best-routed adapter answers directly."""
        start = time.perf_counter()
        config = GenerationConfig(self.config.max_new_tokens)
        routed = self.route(question)
        if not self.config.recite:
            with self.merged(self.adapters[routed[0]]) if routed else contextlib.nullcontext():
                text = generate_chat(self.lm, question_messages(question), config)
            return Answer(text, [], time.perf_counter() - start)
        recited = self.recitations(question, routed)
        if self.config.recite_title and routed:
            recited = self.with_title_recitation(question, routed[0], recited)
        # best-routed last, nearest the question
        context = "\n\n".join(text for _, text in reversed(recited)) or None
        text = generate_chat(self.lm, question_messages(question, context), config)
        citations = [Citation(doc_id, doc_id, snippet=f"recited: {recital[:160]}") for doc_id, recital in recited]
        return Answer(text, citations, time.perf_counter() - start)

    def recitations(self, question: str, routed: Sequence[str]) -> list[tuple[str, str]]:
        """(document, recitation) for each routed adapter whose recitation is about the question, in routed
        order: all of them, so that when the best-routed adapter is the wrong one the right one's recitation
        still reaches the reader. A recitation that is not about the question means that adapter knows nothing
        about it (trained to recite, it would only drag its passage in)."""
        found = []
        for doc_id in routed:
            recital = self.recite_from(doc_id, question)
            if recitation_fits(question, recital):
                found.append((doc_id, recital))
        return found

    def recite_from(self, doc_id: str, cue: str) -> str:
        """What `doc_id`'s adapter recites when cued with `cue` (a question, or a cue it was trained on)."""
        with self.merged(self.adapters[doc_id]):
            return generate_chat(self.lm, recall_messages(cue), GenerationConfig(self.config.recite_tokens))

    def with_title_recitation(
        self, question: str, doc_id: str, recited: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """`recited` with the best-routed adapter's recitation from its title cue first (nearest the question),
        when that is about the question; recitations it repeats are dropped. The title cue is one the adapter
        was trained on, so it recites more faithfully than from a question it never saw. It does not depend on
        the question, so it is recited once per document and kept until the document is re-learned or the
        learner reset or loaded; it is not saved (a checkpoint holds weights and routing keys, never text)."""
        cue = self.title_cues.get(doc_id)
        if cue is None:
            return recited
        if doc_id not in self.title_recitations:  # the same for every question: greedy, from a fixed cue
            self.title_recitations[doc_id] = self.recite_from(doc_id, cue)
        whole = self.title_recitations[doc_id]
        if not recitation_fits(question, whole):
            return recited
        return [(doc_id, whole), *[(d, r) for d, r in recited if not near_copy(r, whole)]]

    # -- one document as a PEFT adapter ---------------------------------------------------------------------
    def compile_document(self, doc: Document, folder: Path) -> CompileReport:
        """Learn `doc` alone into a fresh adapter and write it as a PEFT adapter folder (atomically)."""
        start = time.perf_counter()
        lora = self.fresh_lora()
        examples = self.study(doc)
        losses = train(self.lm, lora, examples, self.config)
        keys = routing_keys(doc, examples)
        size = self.export(
            lora, folder, {"doc_id": doc.id, "doc_hash": doc.hash, "title": doc.title, "routing_keys": keys}
        )
        return CompileReport(
            doc.id,
            time.perf_counter() - start,
            len(self.lm.tokenizer.encode(doc.text)),
            size,
            {"examples": len(examples), "loss_first": losses[0], "loss_last": losses[-1]} if losses else {},
        )

    def export(self, lora: GatedLoRA, folder: Path, manifest: dict[str, Any]) -> int:
        """Write `lora` as a PEFT adapter folder; returns the weight file's bytes."""
        return write_peft(
            folder,
            lora.factors(),
            scale=lora.scale,
            base_model=self.lm.name,
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
        tensors = sum((lora.A.numel() + lora.B.numel()) * width + lora.keep.numel() for lora in self.adapters.values())
        return tensors + sum(len(key.encode()) for keys in self.keys.values() for key in keys)

    def save(self, path: Path) -> None:
        """Every document's adapter (tensors `<i>.A`, `<i>.B` in STORAGE_DTYPE, `<i>.keep` as bool) and its routing
        keys, in one checkpoint."""
        tensors: dict[str, torch.Tensor] = {}
        records = []
        for i, (doc_id, lora) in enumerate(self.adapters.items()):
            tensors.update(
                {
                    f"{i}.A": lora.A.to(STORAGE_DTYPE),
                    f"{i}.B": lora.B.to(STORAGE_DTYPE),
                    f"{i}.keep": lora.keep.bool(),
                }
            )
            cue = self.title_cues.get(doc_id)
            records.append({"doc_id": doc_id, "gated": lora.gated, "keys": self.keys[doc_id], "title_cue": cue})
        meta = {"layers": self.layers, "adapters": records}
        save_checkpoint(path, self.name, self.lm.fingerprint, tensors, meta, self.config)

    def load(self, path: Path) -> None:
        tensors, meta = load_checkpoint(path, self.name, self.lm.fingerprint)
        config = stored_config(path, self.name, meta)
        adapters: dict[str, GatedLoRA] = {}
        keys: dict[str, list[str]] = {}
        title_cues: dict[str, str] = {}
        try:
            for i, record in enumerate(meta["adapters"]):
                lora = GatedLoRA(meta["layers"], *self._shape, config.rank, config.alpha)
                lora.A.data.copy_(tensors[f"{i}.A"])
                lora.B.data.copy_(tensors[f"{i}.B"])
                lora.keep.copy_(tensors[f"{i}.keep"])  # bool (or float32 in older checkpoints) -> float32
                lora.gated = bool(record["gated"])
                adapters[str(record["doc_id"])] = lora.to(self.lm.device)
                keys[str(record["doc_id"])] = [str(k) for k in record["keys"]]
                if record.get("title_cue"):  # older checkpoints have none: those adapters recite from questions only
                    title_cues[str(record["doc_id"])] = str(record["title_cue"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise LoracleError(f"{path}: not a usable ttt checkpoint ({exc!r}; saved by an older loracle?)") from exc
        self.config = config
        self.layers = list(meta["layers"])
        self.adapters, self.keys, self.title_cues = adapters, keys, title_cues
        self.title_recitations = {}
        self._route_all()


def near_copy(text: str, other: str, ratio: float = 0.9) -> bool:
    """Whether two recitations are the same text but for a few characters."""
    return difflib.SequenceMatcher(None, text, other, autojunk=False).ratio() > ratio


def routing_keys(doc: Document, studied: Sequence[StudyExample]) -> list[str]:
    """What routes a question to `doc`'s adapter: the cues it was trained on, then the document's distinct words."""
    cues = list(dict.fromkeys(e.cue for e in studied if e.cue))
    return [*cues, " ".join(sorted(set(words(doc.text))))]
