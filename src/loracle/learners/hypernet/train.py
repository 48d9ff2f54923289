"""Train the hypernetwork by context distillation, from a cached training set or generating as it goes.

Teacher: the base model with the document in its prompt (its top-k over each answer, cached by
`loracle hypernet-data`, or computed each step without one). Student: the base model with only the question and
what the network made of the document: a generated LoRA (design `lora`, the Perceiver) or a prefix cache of
memory tokens (design `prefix`, run exactly as PEFT runs a prefix-tuning adapter). Loss: KL from the teacher's
top-k to the student over the answer tokens, plus the same KL on a few general prompts whose target is the base
model's own reply (interference: an adapter must leave other questions alone), plus a small L1 on generated LoRA
weights. Every step's data is a function of (seed, step), and checkpoints hold the optimizer and RNG state, so a
run killed at any point and resumed trains exactly as a straight run would. A run's folder holds checkpoint/
(loadable as the hypernet learner's `checkpoint`) and train.jsonl, one line a step, plus one line (`heldout_kl`)
every `eval_every` steps when a held-out set is given.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from loracle.atomic import holds_other_data, write_text_atomic
from loracle.errors import LoracleError
from loracle.learners.hypernet.checkpoint import Network, load_hypernet, restore_training, save_hypernet
from loracle.learners.hypernet.dataset import (
    CachedDoc,
    DataSettings,
    Target,
    TrainingSet,
    cache_samples,
    mixed_sample,
    parse_kinds,
)
from loracle.learners.hypernet.network import DEFAULT_TARGETS, Hypernet, NetworkConfig
from loracle.learners.hypernet.prefix import DESIGN as PREFIX_DESIGN
from loracle.learners.hypernet.prefix import MemoryCompressor, PrefixConfig, document_prefix, prefixed_states
from loracle.learners.hypernet.reading import DocPrompt, doc_ids, read_chunks
from loracle.learners.lora import Lora, concat_ranks, hooked
from loracle.model.loader import LoadedModel
from loracle.model.prefix import join_prefixes

#: a run's folder holds the checkpoint (replaced whole at each save) and, beside it, the log: one JSON line a step
CHECKPOINT = "checkpoint"
LOG = "train.jsonl"
#: what the network makes of a document: a LoRA (the Perceiver) or a prefix cache of memory tokens
DESIGNS = ("lora", PREFIX_DESIGN)


@dataclass
class TrainConfig:
    steps: int = 300
    lr: float = 1e-3
    warmup: int = 20
    decay_steps: int = 0  # the lr falls by a cosine to a tenth of `lr` at this step, and stays there (0: constant)
    questions_per_doc: int = 4
    top_k: int = 16
    l1: float = 1e-4
    max_doc_tokens: int = 256
    mix: str = "multi:3,wiki:1"  # without cached data: the kinds of document generated, with weights
    checkpoint_every: int = 25
    checkpoint_minutes: float = 5.0
    interference: int = 1  # general prompts per step (0: none)
    interference_weight: float = 1.0
    interference_tokens: int = 16  # the first tokens of the base model's reply that are trained on
    answer_ce: float = 0.0  # weight of cross-entropy on the exact answer's tokens, beside the KL (0: KL alone)
    seed: int = 0
    rank: int = 8
    width: int = 256
    heads: int = 4
    bias_rank: int = 4
    targets: tuple[str, ...] = DEFAULT_TARGETS
    design: str = "lora"
    memory_tokens: int = 16  # design prefix: the prefix's length
    compress_rank: int = 4  # design prefix: rank of the LoRA on the memory positions (0: memory embeddings alone)
    chunk_tokens: int = 256  # design prefix: a document is read in chunks of this many tokens, one prefix each
    distractor: float = 0.0  # design prefix: share of steps whose prefix also holds another document's, unrelated
    eval_every: int = 0  # steps between held-out KL lines in the log (0: none)
    eval_docs: int = 32  # held-out documents each such line averages over
    extra: dict[str, Any] = field(default_factory=dict)

    def network(self, model: torch.nn.Module) -> NetworkConfig:
        return NetworkConfig.for_model(
            model, self.targets, rank=self.rank, width=self.width, heads=self.heads, bias_rank=self.bias_rank
        )

    def build(self, model: torch.nn.Module) -> Network:
        """A fresh network of this config's design, initialised from `seed`."""
        if self.design not in DESIGNS:
            raise LoracleError(f"--design {self.design}: not a design (one of {', '.join(DESIGNS)})")
        torch.manual_seed(self.seed)
        if self.design == PREFIX_DESIGN:
            config = PrefixConfig.for_model(
                model, self.memory_tokens, self.compress_rank, chunk_tokens=self.chunk_tokens
            )
            return MemoryCompressor.for_model(model, config)
        return Hypernet(self.network(model))


@dataclass
class StepResult:
    loss: float
    kl: float
    interference: float
    l1: float
    answer_tokens: int
    seconds: float
    kind: str
    doc: int | None = None  # the document's index in the cached set
    cpu_seconds: float = 0.0  # this process's CPU time for the step (on a shared machine, less than `seconds`)
    answer_ce: float = 0.0  # cross-entropy of the exact answers, nats/token (logged whatever its weight)


def sample_rng(seed: int, step: int) -> random.Random:
    """The data of step `step` depends only on (seed, step), so a resumed run sees what a straight run would."""
    return random.Random(seed * 1_000_003 + step)


def data_position(seed: int, step: int, size: int) -> int:
    """Which of `size` cached documents step `step` trains on: each epoch is a fresh permutation of them all."""
    epoch, index = divmod(step, size)
    order = list(range(size))
    random.Random(f"{seed}|epoch|{epoch}").shuffle(order)
    return order[index]


def learning_rate(config: TrainConfig, step: int) -> float:
    """The lr at `step`: a linear warm-up over `config.warmup` steps, then constant, or with `config.decay_steps`
    a cosine from `config.lr` down to a tenth of it at that step (a function of the step alone, so a resumed run
    follows the same schedule)."""
    warm = min(1.0, (step + 1) / max(1, config.warmup))
    if config.decay_steps <= config.warmup:
        return config.lr * warm
    done = min(1.0, max(0.0, (step - config.warmup) / (config.decay_steps - config.warmup)))
    return config.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done)))


def _shortened(target: Target, tokens: int) -> Target:
    return Target(target.prompt, target.answer[:tokens], target.top_ids[:tokens], target.top_logp[:tokens])


def distillation_loss(
    lm: LoadedModel,
    net: Network,
    prompt: DocPrompt,
    doc: CachedDoc,
    general: Sequence[Target],
    config: TrainConfig,
    rng: random.Random,
    distractor: Sequence[int] = (),
) -> tuple[torch.Tensor, dict[str, float]]:
    """The step's loss for one document: its questions and `config.interference` general prompts in one batch,
    the student carrying what the network made of the document (a LoRA or a prefix cache; with `distractor`, the
    ids of an unrelated document, a prefix cache that holds that one's too)."""
    model, device = lm.model, lm.device
    questions = rng.sample(doc.targets, min(config.questions_per_doc, len(doc.targets)))
    others = [
        _shortened(t, config.interference_tokens) for t in rng.sample(general, min(config.interference, len(general)))
    ]
    zero = torch.zeros((), device=device)
    if isinstance(net, MemoryCompressor):
        kv = document_prefix(model, net, prompt.prefix, doc.ids)
        if distractor:  # another document's prefix beside it, before or after: answer from the right one
            with torch.no_grad():
                other = document_prefix(model, net, prompt.prefix, distractor)
            kv = join_prefixes(model, [other, kv] if rng.random() < 0.5 else [kv, other])
        terms, ces = answer_terms(lm, [*questions, *others], lambda ids, mask: prefixed_states(model, kv, ids, mask))
        l1 = zero
    else:
        generated = net(read_chunks(model, prompt, [doc.ids]))[0]
        lora: Lora = concat_ranks([net.bias_lora(), generated])
        decoder = getattr(model, model.base_model_prefix)

        def hooked_states(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            with hooked(model, lora):
                return decoder(input_ids=ids, attention_mask=mask).last_hidden_state

        terms, ces = answer_terms(lm, [*questions, *others], hooked_states)
        l1 = torch.stack([a.abs().mean() + b.abs().mean() for a, b in generated.values()]).mean()
    kl = torch.cat(terms[: len(questions)]).mean() if questions else zero
    answer_ce = torch.cat(ces[: len(questions)]).mean() if questions else zero
    interference = torch.cat(terms[len(questions) :]).mean() if others else zero
    loss = kl + config.answer_ce * answer_ce + config.interference_weight * interference + config.l1 * l1
    tokens = sum(len(t.answer) for t in questions)
    return loss, {
        "kl": kl.item(),
        "answer_ce": answer_ce.item(),
        "interference": interference.item(),
        "l1": l1.item(),
        "answer_tokens": tokens,
    }


def kl_terms(
    lm: LoadedModel, rows: Sequence[Target], states_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> list[torch.Tensor]:
    """Per row, KL(teacher top-k || student) at each answer token (answer_terms' first half)."""
    return answer_terms(lm, rows, states_of)[0]


def answer_terms(
    lm: LoadedModel, rows: Sequence[Target], states_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per row, KL(teacher top-k || student) and the student's cross-entropy of the exact answer, at each answer
    token; `states_of(ids, mask)` runs the student's decoder over the right-padded batch of prompt + answer.
    The KL moves the whole answer distribution; exact recall of an invented name turns on its first tokens'
    argmax, which the cross-entropy aims at directly."""
    tokenizer, device, model = lm.tokenizer, lm.device, lm.model
    width = max(len(t.prompt) + len(t.answer) for t in rows)
    batch = torch.full((len(rows), width), tokenizer.pad_token_id or 0, dtype=torch.long, device=device)
    attention = torch.zeros_like(batch)
    for row, target in enumerate(rows):
        seq = target.prompt + target.answer
        batch[row, : len(seq)] = torch.tensor(seq, device=device)
        attention[row, : len(seq)] = 1
    states = states_of(batch, attention)
    kls, ces = [], []
    for row, target in enumerate(rows):
        first = len(target.prompt) - 1
        logits = model.get_output_embeddings()(states[row, first : first + len(target.answer)])  # answers only
        logp = F.log_softmax(logits.float(), dim=-1)
        student_logp = logp.gather(-1, target.top_ids.to(device))
        teacher_p = F.softmax(target.top_logp.to(device).float(), dim=-1)  # renormalised over the top k
        kls.append((teacher_p * (teacher_p.clamp_min(1e-12).log() - student_logp)).sum(-1))
        answer = torch.as_tensor(target.answer, device=device).unsqueeze(-1)
        ces.append(-logp.gather(-1, answer).squeeze(-1))
    return kls, ces


def heldout_kl(
    lm: LoadedModel,
    net: Network,
    prompt: DocPrompt,
    docs: Sequence[CachedDoc],
    general: Sequence[Target],
    config: TrainConfig,
) -> dict[str, float]:
    """Mean KL over held-out documents' questions, and over general prompts with their adapters (each document
    with a fixed one of them), without grad and drawing on no shared RNG (a resumed run logs the same)."""
    kls, interference = [], []
    with torch.no_grad():
        for number, doc in enumerate(docs):
            rng = random.Random(f"heldout|{number}")
            _, parts = distillation_loss(lm, net, prompt, doc, general, config, rng)
            kls.append(parts["kl"])
            interference.append(parts["interference"])
    return {"heldout_kl": sum(kls) / len(kls), "heldout_interference": sum(interference) / len(interference)}


def data_id(data: TrainingSet | None) -> str | None:
    """What identifies a cached set (its manifest's hash), or None for data generated as training goes."""
    if data is None:
        return None
    return hashlib.sha256(json.dumps(data.manifest, sort_keys=True).encode()).hexdigest()[:16]


class Trainer:
    """Owns the network, the optimizer and the step count; resumes from a checkpoint folder."""

    def __init__(
        self,
        lm: LoadedModel,
        config: TrainConfig,
        out_dir: Path,
        meta: dict[str, Any] | None = None,
        data: TrainingSet | None = None,
        heldout: TrainingSet | None = None,
    ) -> None:
        self.lm = lm
        self.heldout = heldout
        self.config = config
        self.out_dir = out_dir
        self.meta = dict(meta or {})
        self.data = data
        #: generating as it goes: the kinds of document made, with their weights
        self.mix = parse_kinds(config.mix, 1, "--mix") if data is None else {}
        self._general: list[Target] | None = data.general if data else None
        lm.model.requires_grad_(False)
        self.prompt = DocPrompt.for_tokenizer(lm.tokenizer)
        self.history: list[dict[str, Any]] = []
        self.step = 0
        if (out_dir / CHECKPOINT / "meta.json").is_file():
            net, saved, state = load_hypernet(out_dir / CHECKPOINT, lm.fingerprint)
            if saved.get("data") != data_id(data):
                raise LoracleError(
                    f"{out_dir}: a run trained on other data ({saved.get('data_path') or 'generated as it went'}); "
                    "resume it with the same --data, or choose another --out"
                )
            design = saved.get("train_config", {}).get("design", "lora")
            if design != config.design:
                raise LoracleError(f"{out_dir}: a run of --design {design}; resume it with the same --design")
            self.net = net.to(lm.device)
            self.optimizer = self._optimizer()
            restore_training(self.optimizer, saved, state)
            self.step = int(saved["step"])
            self.history = list(saved.get("history", []))
            self.meta = {**{k: saved[k] for k in ("base_model", "commands") if k in saved}, **self.meta}
        else:
            self.net = config.build(lm.model).to(lm.device)
            self.optimizer = self._optimizer()
        self.net.train()
        self._trim_log()

    @property
    def log_path(self) -> Path:
        return self.out_dir / LOG

    def _trim_log(self) -> None:
        """Drop log lines of steps after the checkpoint (a run killed between checkpoints trains them again), all
        of them without a checkpoint."""
        if not self.log_path.is_file():
            return
        kept = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # the line a kill cut short
                continue
            if isinstance(record, dict) and self.step and record.get("step", 0) <= self.step:
                kept.append(line)
        write_text_atomic(self.log_path, "".join(f"{line}\n" for line in kept))

    def _optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.net.parameters(), lr=self.config.lr, weight_decay=0.0)

    def _lr(self, step: int) -> float:
        return learning_rate(self.config, step)

    def general(self) -> list[Target]:
        """The interference targets: the cached set's, or (generating as it goes) made once from the base model."""
        if not self.config.interference:
            return []
        if self._general is None:
            from loracle.learners.hypernet.dataset import general_targets

            self._general = general_targets(self.lm, DataSettings({}).general, self.config.top_k)
        return self._general

    def _doc(self, rng: random.Random) -> tuple[CachedDoc, int | None]:
        if self.data is not None:
            position = data_position(self.config.seed, self.step, len(self.data.docs))
            return self.data.docs[position], position
        c = self.config
        settings = DataSettings({}, top_k=c.top_k, max_doc_tokens=c.max_doc_tokens, questions=c.questions_per_doc)
        sample = mixed_sample(rng, self.mix)
        return cache_samples(self.lm, self.prompt, [sample], settings)[0], None

    def _distractor(self, rng: random.Random) -> list[int]:
        """An unrelated document's ids: another cached one, or (generating as it goes) one more generated."""
        if self.data is not None:
            return self.data.docs[rng.randrange(len(self.data.docs))].ids
        sample = mixed_sample(rng, self.mix)
        return doc_ids(self.lm.tokenizer, sample.text)[: self.config.max_doc_tokens]

    def train_step(self) -> StepResult:
        start, cpu = time.perf_counter(), time.process_time()
        rng = sample_rng(self.config.seed, self.step)
        doc, position = self._doc(rng)
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(self.step)
        distractor = self._distractor(rng) if rng.random() < self.config.distractor else []
        loss, parts = distillation_loss(
            self.lm, self.net, self.prompt, doc, self.general(), self.config, rng, distractor
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.optimizer.step()
        self.step += 1
        result = StepResult(
            loss.item(),
            parts["kl"],
            parts["interference"],
            parts["l1"],
            int(parts["answer_tokens"]),
            time.perf_counter() - start,
            doc.kind,
            position,
            time.process_time() - cpu,
            parts["answer_ce"],
        )
        record = {"step": self.step, **asdict(result)}
        self.history.append(record)
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
        return result

    def evaluate(self) -> dict[str, Any] | None:
        """At every `eval_every`-th step (and step 0), the KL on the first `eval_docs` held-out documents, as a
        line of the log (its key `heldout_kl` tells it from a step's line)."""
        c = self.config
        if self.heldout is None or not c.eval_every or self.step % c.eval_every:
            return None
        start = time.perf_counter()
        docs = self.heldout.docs[: c.eval_docs]
        record = {"step": self.step, **heldout_kl(self.lm, self.net, self.prompt, docs, self.heldout.general, c)}
        record |= {"heldout_docs": len(docs), "seconds": time.perf_counter() - start}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
        return record

    def save(self) -> None:
        meta = {**self.meta, "step": self.step, "train_config": asdict(self.config), "history": self.history}
        meta |= {"data": data_id(self.data), "data_path": str(self.data.root) if self.data else None}
        save_hypernet(self.out_dir / CHECKPOINT, self.net, self.lm.fingerprint, meta, self.optimizer)

    def run(self, until: int, on_step: Callable[[StepResult], None] | None = None, max_seconds: float = 0) -> None:
        """Train until step `until` (or `max_seconds` of wall time), checkpointing every `checkpoint_every` steps or
        `checkpoint_minutes`, whichever comes first, and at the end."""
        if holds_other_data(self.out_dir, CHECKPOINT) and not self.log_path.is_file():
            raise LoracleError(f"{self.out_dir}: exists and holds no training run; choose another --out")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.step == 0:
            self.evaluate()  # where the curve starts
        start = saved = time.perf_counter()
        while self.step < until:
            result = self.train_step()
            self.evaluate()
            if on_step:
                on_step(result)
            now = time.perf_counter()
            if self.step % self.config.checkpoint_every == 0 or now - saved > self.config.checkpoint_minutes * 60:
                self.save()
                saved = now
            if max_seconds and now - start > max_seconds:
                break
        self.save()


def export_shipped(train_dir: Path, dest: Path, lm: LoadedModel, extra: dict[str, Any]) -> None:
    """Write the network alone, in float16, for shipping inside the package."""
    net, meta, _ = load_hypernet(train_dir / CHECKPOINT, lm.fingerprint)
    keep = {k: meta[k] for k in ("step", "train_config", "history", "commands", "base_model") if k in meta}
    save_hypernet(dest, net, lm.fingerprint, {**keep, **extra}, dtype=torch.float16)


def default_train_dir(model_name: str) -> Path:
    from loracle.model.cache import cache_root

    return cache_root() / "hypernet-train" / model_name


def train_with_progress(
    lm: LoadedModel,
    config: TrainConfig,
    out: Path | None,
    max_minutes: float = 0,
    ship: bool = False,
    data: TrainingSet | None = None,
    resume: bool = True,
    heldout: TrainingSet | None = None,
) -> str:
    """Train with a rich progress bar; returns a one-line summary. Without `resume`, an existing run in `out` is
    refused rather than continued."""
    import sys

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from loracle.learners.hypernet.checkpoint import MEMORY_FOLDER, shipped_path

    out = out or default_train_dir(lm.name)
    if not resume and (out / CHECKPOINT / "meta.json").is_file():
        raise LoracleError(f"{out}: holds a training run already; pass --resume to continue it, or another --out")
    command = " ".join(["loracle", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("loracle") else None
    trainer = Trainer(lm, config, out, meta={"base_model": lm.name}, data=data, heldout=heldout)
    if trainer.step < config.steps:  # otherwise there is nothing to train (e.g. --ship of a finished run)
        if command:
            trainer.meta["commands"] = [*trainer.meta.get("commands", []), command]
        columns = (
            TextColumn("training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns) as progress:
            total = config.steps if config.steps < 10**9 else None  # a run limited by time alone
            task = progress.add_task("train", total=total, completed=trainer.step, info="")

            def on_step(result: StepResult) -> None:
                recent = [h["kl"] for h in trainer.history[-20:]]
                info = f"kl {result.kl:.3f} (avg20 {sum(recent) / len(recent):.3f}) {result.seconds:.1f}s/step"
                progress.update(task, completed=trainer.step, info=info)

            trainer.run(config.steps, on_step, max_seconds=max_minutes * 60)
    # the memory-token design ships as the memory learner's network, the Perceiver as the hypernet learner's
    shipped = shipped_path(lm.name, MEMORY_FOLDER if config.design == PREFIX_DESIGN else "")
    if ship:
        export_shipped(out, shipped, lm, {"base_model": lm.name, "shipped_by": command})
    return f"step {trainer.step}/{config.steps}; checkpoint in {out / CHECKPOINT}" + (
        f"; shipped to {shipped}" if ship else ""
    )
