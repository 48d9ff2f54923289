"""The `kstore` learner: a hidden-state knowledge store with kNN-LM logit modulation.

Learning runs the base model over each document and stores, for every token position, the hidden state
of one layer (the key) and the token that came next in the document (the value). Answering decodes
closed-book; at every step where the model is unsure (top probability below `max_confidence`), the
current hidden state looks up its k nearest stored keys (cosine similarity after removing the store's
mean state, which otherwise dominates every similarity) among the sentences that best match the
question, and, when the nearest is close enough, the model's next-token distribution is interpolated
with the neighbours' next-token distribution:  p = (1 - lam) * p_model + lam * p_knn  (Khandelwal et
al., kNN-LM, 2020). Ungated, the store tends to copy whatever followed the question's words in the
document; gated by the model's confidence, it fills the slots the model cannot.

Question-relevance gate: before decoding, the question's hidden states are matched against every stored
sentence (late interaction: the mean over question tokens of each token's best similarity in the
sentence). The best sentence's score is the question's match; below `min_question_match` the store is
not consulted at all for that question, so a question unrelated to the learned documents gets exactly
the base model's answer (no forgetting there). No document text is put in the prompt; only the stored
states and next tokens are used. How the defaults were chosen: docs/experiments/kstore.md.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import DynamicCache

from loracle.documents import Document
from loracle.errors import LoracleError
from loracle.learners.base import Answer, Citation, LearnReport
from loracle.learners.checkpoint import load_checkpoint, save_checkpoint, stored_config
from loracle.learners.kstore.config import KStoreConfig
from loracle.model import LoadedModel, encode_chat, question_messages
from loracle.model.chat import stop_token_ids


class KStoreLearner:
    """kNN-LM over hidden states of the learned documents."""

    name = "kstore"

    def __init__(self, lm: LoadedModel, config: KStoreConfig | None = None) -> None:
        self.lm = lm
        self.config = config or KStoreConfig()
        self.stops = stop_token_ids(lm.tokenizer)
        self.reset()

    def reset(self) -> None:
        hidden = self.lm.model.config.hidden_size
        self.keys = torch.zeros(0, hidden, dtype=torch.float16)
        self.values = torch.zeros(0, dtype=torch.int64)
        self.doc_index = torch.zeros(0, dtype=torch.int64)
        self.segments = torch.zeros(0, dtype=torch.int64)
        self.mean = torch.zeros(hidden)
        self.docs: list[dict[str, str]] = []

    # -- learning --------------------------------------------------------------------------------
    def _states(self, ids: list[int]) -> torch.Tensor:
        """Hidden states of `self.config.layer` for every position of `ids`, window by window."""
        window = self.config.window
        parts = []
        with torch.inference_mode():
            for start in range(0, len(ids), window):
                chunk = torch.tensor([ids[start : start + window]], device=self.lm.device)
                out = self.lm.model(input_ids=chunk, output_hidden_states=True)
                parts.append(self._layer_of(out.hidden_states)[0].float().cpu())
        return torch.cat(parts)

    def _layer_of(self, hidden_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The setting's layer among a forward pass's hidden states (the last one if the model is shallower)."""
        layer = self.config.layer
        return hidden_states[min(layer, len(hidden_states) - 1) if layer >= 0 else layer]

    def learn(self, docs: Sequence[Document]) -> LearnReport:
        start = time.perf_counter()
        keys, values, index, segments = [self.keys.float()], [self.values], [self.doc_index], [self.segments]
        next_segment = int(self.segments.max()) + 1 if len(self.segments) else 0
        tokens = 0
        for doc in docs:
            ids = self.lm.tokenizer.encode(f"{doc.title}\n\n{doc.text.strip()}")
            if len(ids) < 2:
                continue
            states = self._states(ids)
            positions = torch.arange(min(self.config.skip, len(ids) - 2), len(ids) - 1)
            keys.append(states[positions])
            values.append(torch.tensor(ids)[positions + 1])
            index.append(torch.full((len(positions),), len(self.docs), dtype=torch.int64))
            sentence = self._sentence_ids(ids) + next_segment
            next_segment = int(sentence.max()) + 1
            segments.append(sentence[positions])
            self.docs.append({"id": doc.id, "title": doc.title})
            tokens += len(ids)
        all_keys = torch.cat(keys)
        self.mean = all_keys.mean(0) if len(all_keys) else self.mean
        self.keys = all_keys.to(torch.float16)
        self.values, self.doc_index, self.segments = torch.cat(values), torch.cat(index), torch.cat(segments)
        return LearnReport(
            self.name,
            len(docs),
            tokens,
            time.perf_counter() - start,
            details={"entries": len(self.keys)},
        )

    def _sentence_ids(self, ids: list[int]) -> torch.Tensor:
        """A sentence number for every position: a new sentence starts after ".", "?", "!" or a line break."""
        numbers, current = [], 0
        for token in ids:
            numbers.append(current)
            piece = self.lm.tokenizer.decode([token])
            if "\n" in piece or piece.rstrip().endswith((".", "?", "!")):
                current += 1
        return torch.tensor(numbers, dtype=torch.int64)

    # -- answering -------------------------------------------------------------------------------
    def question_match(self, keys: torch.Tensor, question: str) -> torch.Tensor:
        """How well the question's hidden states match each stored sentence (late interaction: the mean over
        question tokens of the best similarity among the sentence's entries), one score per sentence."""
        ids = self.lm.tokenizer.encode(question)
        states = torch.nn.functional.normalize(self._states(ids) - self.mean, dim=-1)
        sims = states @ keys.T  # question tokens x entries
        count = int(self.segments.max()) + 1
        best = torch.full((len(ids), count), -2.0).scatter_reduce(
            1, self.segments.expand(len(ids), -1), sims, reduce="amax"
        )
        return best.mean(0)

    def _scope(self, keys: torch.Tensor, question: str) -> tuple[torch.Tensor, float]:
        """Indices of the entries in the stored sentences that best match the question's hidden states, and
        the best sentence's match score (1.0 when neither the scope nor the gate needs it computed)."""
        if self.config.scope <= 0 and self.config.min_question_match <= -1:
            return torch.arange(len(keys)), 1.0
        scores = self.question_match(keys, question)
        if self.config.scope <= 0:
            return torch.arange(len(keys)), float(scores.max())
        chosen = scores.topk(min(self.config.scope, len(scores))).indices
        return torch.nonzero(torch.isin(self.segments, chosen)).flatten(), float(scores.max())

    def _normalized_keys(self) -> torch.Tensor:
        return torch.nn.functional.normalize(self.keys.float() - self.mean, dim=-1)

    def _neighbours(self, keys: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        query = torch.nn.functional.normalize(state.float().cpu() - self.mean, dim=-1)
        return (keys @ query).topk(min(self.config.k, len(keys)))

    def generate_ids(self, question: str) -> tuple[list[int], Counter[int]]:
        """Greedy closed-book decoding with the store mixed in; also how often each document was a neighbour."""
        s = self.config
        keys = entries = None
        if len(self.keys):
            all_keys = self._normalized_keys()
            entries, match = self._scope(all_keys, question)
            if match >= s.min_question_match:  # below it the question is unrelated: the base model answers
                keys = all_keys[entries]
            else:
                entries = None
        prompt = encode_chat(self.lm.tokenizer, question_messages(question))
        input_ids = torch.tensor([prompt], device=self.lm.device)
        cache = DynamicCache()
        generated: list[int] = []
        used: Counter[int] = Counter()
        with torch.inference_mode():
            for _ in range(s.max_new_tokens):
                out = self.lm.model(input_ids=input_ids, cache=cache, use_cache=True, output_hidden_states=True)
                probs = torch.softmax(out.logits[0, -1].float().cpu(), dim=-1)
                if keys is not None and entries is not None and float(probs.max()) < s.max_confidence:
                    sims, idx = self._neighbours(keys, self._layer_of(out.hidden_states)[0, -1])
                    if float(sims[0]) >= s.threshold:
                        idx = entries[idx]
                        knn = torch.zeros_like(probs).index_add_(
                            0, self.values[idx], torch.softmax(sims / s.temperature, -1)
                        )
                        lam = s.lam * (1 - float(probs.max())) if s.gate_by_confidence else s.lam
                        probs = (1 - lam) * probs + lam * knn
                        used.update(self.doc_index[idx].tolist())
                token = int(torch.argmax(probs))
                if token in self.stops:
                    break
                generated.append(token)
                input_ids = torch.tensor([[token]], device=self.lm.device)
        return generated, used

    def answer(self, question: str) -> Answer:
        start = time.perf_counter()
        generated, used = self.generate_ids(question)
        text = self.lm.tokenizer.decode(generated, skip_special_tokens=True).strip()
        citations = [Citation(self.docs[i]["id"], self.docs[i]["title"]) for i, _ in used.most_common(3)]
        return Answer(text, citations, time.perf_counter() - start)

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        tensors = {
            "keys": self.keys,
            "values": self.values,
            "doc_index": self.doc_index,
            "segments": self.segments,
            "mean": self.mean,
        }
        save_checkpoint(path, self.name, self.lm.fingerprint, tensors, {"docs": self.docs}, self.config)

    def load(self, path: Path) -> None:
        tensors, meta = load_checkpoint(path, self.name, self.lm.fingerprint)
        config = stored_config(path, self.name, meta)
        hidden = self.lm.model.config.hidden_size
        try:
            keys, values, index, segments, mean = (
                tensors[n] for n in ("keys", "values", "doc_index", "segments", "mean")
            )
        except KeyError as exc:
            raise LoracleError(f"{path}: kstore checkpoint lacks tensor {exc}") from exc
        if keys.ndim != 2 or keys.shape[1] != hidden or not (len(keys) == len(values) == len(index) == len(segments)):
            raise LoracleError(f"{path}: kstore checkpoint tensors have the wrong shapes for this model")
        docs = meta.get("docs", [])
        if len(index) and int(index.max()) >= len(docs):
            raise LoracleError(f"{path}: kstore checkpoint names documents it does not list")
        self.keys, self.values, self.doc_index = keys.to(torch.float16), values.long(), index.long()
        self.segments, self.mean = segments.long(), mean.float()
        self.docs = list(docs)
        self.config = config
