"""Train the hypernetwork by context distillation.

Teacher: the base model with the document in its prompt. Student: the base model with the generated LoRA
and only the question. Loss: KL from the teacher's top-k next-token distribution to the student's, over the
answer tokens, plus a small L1 on the generated weights. The document is read once per step: that pass
gives the hypernetwork its activations and the teacher its KV cache, which each question then extends.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from loracle.learners.hypernet.checkpoint import load_hypernet, restore_optimizer, save_hypernet
from loracle.learners.hypernet.data import Sample, training_sample
from loracle.learners.hypernet.network import DEFAULT_TARGETS, Hypernet, NetworkConfig
from loracle.learners.hypernet.reading import DocPrompt, Reading, answer_ids, doc_ids, student_prompt
from loracle.learners.lora import Lora, concat_ranks, hooked
from loracle.model.loader import LoadedModel


@dataclass
class TrainConfig:
    steps: int = 300
    lr: float = 1e-3
    warmup: int = 20
    questions_per_doc: int = 4
    top_k: int = 16
    l1: float = 1e-4
    max_doc_tokens: int = 256
    wiki_fraction: float = 0.25
    checkpoint_every: int = 25
    seed: int = 0
    rank: int = 8
    width: int = 256
    targets: tuple[str, ...] = DEFAULT_TARGETS
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepResult:
    loss: float
    kl: float
    l1: float
    answer_tokens: int
    seconds: float
    kind: str


def sample_rng(seed: int, step: int) -> random.Random:
    """The data of step `step` depends only on (seed, step), so a resumed run sees what a straight run would."""
    return random.Random(seed * 1_000_003 + step)


def distillation_loss(
    lm: LoadedModel, net: Hypernet, prompt: DocPrompt, sample: Sample, config: TrainConfig, rng: random.Random
) -> tuple[torch.Tensor, dict[str, float]]:
    model, tokenizer = lm.model, lm.tokenizer
    device = lm.device
    ids = doc_ids(tokenizer, sample.text)[: config.max_doc_tokens]
    read = prompt.prefix + ids
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor([read], device=device),
            use_cache=True,
            output_hidden_states=True,
            logits_to_keep=1,
            cache=DynamicCache(),
        )
    layers = model.config.num_hidden_layers
    hidden = torch.stack(out.hidden_states[:layers], dim=1)[:, :, len(prompt.prefix) :]
    reading = Reading(hidden=hidden, mask=torch.ones(hidden.shape[0], hidden.shape[2], dtype=torch.bool, device=device))
    cache = out.cache
    questions = rng.sample(sample.qa, min(config.questions_per_doc, len(sample.qa)))

    teacher: list[tuple[torch.Tensor, torch.Tensor]] = []
    students: list[tuple[list[int], int, int]] = []  # ids, first answer position, answer length
    with torch.no_grad():
        for question, answers in questions:
            answer = answer_ids(tokenizer, answers[0])
            suffix = prompt.suffix(tokenizer, question)
            seq = torch.tensor([suffix + answer], device=device)
            logits = model(input_ids=seq, cache=cache, logits_to_keep=len(answer) + 1).logits[0, :-1]
            cache.crop(-(len(suffix) + len(answer)))  # back to the document alone for the next question
            top = logits.float().topk(config.top_k, dim=-1)
            teacher.append((top.values, top.indices))
            closed = student_prompt(tokenizer, question)
            students.append((closed + answer, len(closed) - 1, len(answer)))

    generated = net(reading)[0]
    lora: Lora = concat_ranks([net.bias_lora(), generated])
    width = max(len(s[0]) for s in students)
    batch = torch.full((len(students), width), tokenizer.pad_token_id or 0, dtype=torch.long, device=device)
    attention = torch.zeros_like(batch)
    for row, (seq, _, _) in enumerate(students):
        batch[row, : len(seq)] = torch.tensor(seq, device=device)
        attention[row, : len(seq)] = 1
    decoder = getattr(model, model.base_model_prefix)
    with hooked(model, lora):
        states = decoder(input_ids=batch, attention_mask=attention).last_hidden_state
    kl_terms = []
    for row, ((_, first, length), (values, indices)) in enumerate(zip(students, teacher, strict=True)):
        logits = model.get_output_embeddings()(states[row, first : first + length])  # only where answers are
        student_logp = F.log_softmax(logits.float(), dim=-1).gather(-1, indices)
        teacher_p = F.softmax(values, dim=-1)
        kl_terms.append((teacher_p * (teacher_p.clamp_min(1e-12).log() - student_logp)).sum(-1))
    kl = torch.cat(kl_terms).mean()
    l1 = torch.stack([a.abs().mean() + b.abs().mean() for a, b in generated.values()]).mean()
    loss = kl + config.l1 * l1
    tokens = sum(s[2] for s in students)
    return loss, {"kl": kl.item(), "l1": l1.item(), "answer_tokens": tokens}


class Trainer:
    """Owns the network, the optimizer and the step count; resumes from a checkpoint folder."""

    def __init__(self, lm: LoadedModel, config: TrainConfig, out_dir: Path, meta: dict[str, Any] | None = None) -> None:
        self.lm = lm
        self.config = config
        self.out_dir = out_dir
        self.meta = dict(meta or {})
        lm.model.requires_grad_(False)
        self.prompt = DocPrompt.for_tokenizer(lm.tokenizer)
        self.history: list[dict[str, Any]] = []
        self.step = 0
        if (out_dir / "meta.json").is_file():
            net, saved, opt_tensors = load_hypernet(out_dir, lm.fingerprint)
            self.net = net.to(lm.device)
            self.optimizer = self._optimizer()
            restore_optimizer(self.optimizer, saved, opt_tensors)
            self.step = int(saved["step"])
            self.history = list(saved.get("history", []))
            self.meta = {**{k: saved[k] for k in ("base_model", "commands") if k in saved}, **self.meta}
        else:
            torch.manual_seed(config.seed)
            hconfig = NetworkConfig.for_model(lm.model, config.targets, rank=config.rank, width=config.width)
            self.net = Hypernet(hconfig).to(lm.device)
            self.optimizer = self._optimizer()
        self.net.train()

    def _optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.net.parameters(), lr=self.config.lr, weight_decay=0.0)

    def _lr(self, step: int) -> float:
        return self.config.lr * min(1.0, (step + 1) / max(1, self.config.warmup))

    def train_step(self) -> StepResult:
        start = time.perf_counter()
        rng = sample_rng(self.config.seed, self.step)
        sample = training_sample(rng, self.config.wiki_fraction)
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(self.step)
        loss, parts = distillation_loss(self.lm, self.net, self.prompt, sample, self.config, rng)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.optimizer.step()
        self.step += 1
        result = StepResult(
            loss.item(), parts["kl"], parts["l1"], int(parts["answer_tokens"]), time.perf_counter() - start, sample.kind
        )
        self.history.append({"step": self.step, **asdict(result)})
        return result

    def save(self) -> None:
        meta = {**self.meta, "step": self.step, "train_config": asdict(self.config), "history": self.history}
        save_hypernet(self.out_dir, self.net, self.lm.fingerprint, meta, self.optimizer)

    def run(self, until: int, on_step: Callable[[StepResult], None] | None = None, max_seconds: float = 0) -> None:
        """Train until step `until` (or `max_seconds` of wall time), checkpointing periodically and at the end."""
        start = time.perf_counter()
        while self.step < until:
            result = self.train_step()
            if on_step:
                on_step(result)
            if self.step % self.config.checkpoint_every == 0:
                self.save()
            if max_seconds and time.perf_counter() - start > max_seconds:
                break
        self.save()


def export_shipped(train_dir: Path, dest: Path, lm: LoadedModel, extra: dict[str, Any]) -> None:
    """Write the network alone, in float16, for shipping inside the package."""
    net, meta, _ = load_hypernet(train_dir, lm.fingerprint)
    keep = {k: meta[k] for k in ("step", "train_config", "history", "commands", "base_model") if k in meta}
    save_hypernet(dest, net, lm.fingerprint, {**keep, **extra}, dtype=torch.float16)


def default_train_dir(model_name: str) -> Path:
    from loracle.model.cache import cache_root

    return cache_root() / "hypernet-train" / model_name


def train_with_progress(
    lm: LoadedModel, config: TrainConfig, out: Path | None, max_minutes: float = 0, ship: bool = False
) -> str:
    """Train with a rich progress bar; returns a one-line summary."""
    import sys

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from loracle.learners.hypernet.checkpoint import shipped_path

    out = out or default_train_dir(lm.name)
    command = " ".join(["loracle", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("loracle") else None
    trainer = Trainer(lm, config, out, meta={"base_model": lm.name})
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
            task = progress.add_task("train", total=config.steps, completed=trainer.step, info="")

            def on_step(result: StepResult) -> None:
                recent = [h["kl"] for h in trainer.history[-20:]]
                info = f"kl {result.kl:.3f} (avg20 {sum(recent) / len(recent):.3f}) {result.seconds:.1f}s/step"
                progress.update(task, completed=trainer.step, info=info)

            trainer.run(config.steps, on_step, max_seconds=max_minutes * 60)
    if ship:
        export_shipped(out, shipped_path(lm.name), lm, {"base_model": lm.name, "shipped_by": command})
    return f"step {trainer.step}/{config.steps}; checkpoint in {out}" + (
        f"; shipped to {shipped_path(lm.name)}" if ship else ""
    )
