"""`loracle hypernet-data` (the cached training set) and `loracle train-hypernet` (training, resumable)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import typer

from loracle.cli.app import ModelOption, ThreadsOption, app, console, load_base
from loracle.errors import LoracleError


@app.command("hypernet-data")
def hypernet_data(
    out: Path = typer.Option(..., "--out", help="Folder of the training set; a re-run completes missing shards."),
    docs: int = typer.Option(1000, "--docs", help="Documents of each kind (a kind may say its own: multi:500)."),
    kinds: str = typer.Option("single,multi,wiki", "--kinds", help="Comma-separated: single, multi, wiki."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generated documents (held-back sets use another)."),
    shard_docs: int = typer.Option(64, "--shard-docs", min=1, help="Documents per shard file."),
    max_doc_tokens: int = typer.Option(256, "--max-doc-tokens", min=8, help="Longest document, in tokens."),
    questions: int = typer.Option(8, "--questions", min=1, help="Most questions kept per document."),
    model: str = ModelOption,
    threads: int = ThreadsOption,
) -> None:
    """Write the hypernetwork's training set: documents, questions and the teacher's top-16 over each answer.

    Example: nice -n 10 loracle hypernet-data --out data/hn --kinds single:2000,multi:500,wiki:500 --threads 1
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from loracle.learners.hypernet.dataset import DataSettings, make_data, parse_kinds

    settings = DataSettings(
        parse_kinds(kinds, docs), seed=seed, shard_docs=shard_docs, max_doc_tokens=max_doc_tokens, questions=questions
    )
    lm = load_base(model, threads)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        tasks = {kind: bar.add_task(f"{kind} shards", total=settings.shards(kind)) for kind in settings.docs}
        written = make_data(lm, out, settings, lambda kind, done, _total: bar.update(tasks[kind], completed=done))
    console.print(f"{out}: {sum(settings.docs.values())} documents; {sum(written.values())} shards written this run")


@app.command("train-hypernet")
def train_hypernet(
    data: Path | None = typer.Option(
        None, "--data", help="A training set from `loracle hypernet-data` (default: generate each step's document)."
    ),
    steps: int | None = typer.Option(
        None, "--steps", help="Train until this many steps in total (default: 300, or no limit with --hours)."
    ),
    hours: float = typer.Option(0, "--hours", help="Stop (and checkpoint) after this many hours of wall time."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out if there is one."),
    out: Path | None = typer.Option(None, "--out", help="Checkpoint folder (default: <cache>/hypernet-train/<model>)."),
    plot: Path | None = typer.Option(None, "--plot", help="Afterwards, draw the run's learning curve to this PNG."),
    max_minutes: float = typer.Option(0, "--max-minutes", help="Stop (and checkpoint) after this many minutes."),
    lr: float = typer.Option(1e-3, "--lr", help="AdamW learning rate."),
    decay_steps: int = typer.Option(
        0, "--decay-steps", min=0, help="Cosine-decay the lr to a tenth of --lr by this step (0: constant)."
    ),
    rank: int = typer.Option(8, "--rank", help="LoRA rank per chunk (new runs only)."),
    width: int = typer.Option(256, "--width", help="The Perceiver's width (new runs only)."),
    heads: int = typer.Option(4, "--heads", help="The Perceiver's attention heads (new runs only)."),
    bias_rank: int = typer.Option(4, "--bias-rank", help="Rank of the learned bias LoRA (new runs only)."),
    max_doc_tokens: int = typer.Option(256, "--max-doc-tokens", help="Longest document read (without --data)."),
    questions_per_doc: int = typer.Option(4, "--questions-per-doc", help="Questions trained on per step."),
    interference: int = typer.Option(1, "--interference", help="General prompts per step (0: no interference loss)."),
    interference_weight: float = typer.Option(1.0, "--interference-weight", help="Weight of the interference KL."),
    answer_ce: float = typer.Option(
        0.0, "--answer-ce", min=0, help="Weight of cross-entropy on the exact answer beside the KL (0: KL alone)."
    ),
    mix: str = typer.Option(
        "multi:3,wiki:1", "--mix", help="Without --data: kinds of document generated, with weights (single:2,multi:1)."
    ),
    checkpoint_every: int = typer.Option(25, "--checkpoint-every", help="Steps between checkpoints."),
    checkpoint_minutes: float = typer.Option(5.0, "--checkpoint-minutes", help="Minutes between checkpoints."),
    seed: int = typer.Option(0, "--seed", help="Seed of the network's init and of the data order."),
    design: str = typer.Option(
        "lora", "--design", help="lora: the Perceiver writes LoRA; prefix: memory tokens write a prefix cache."
    ),
    memory_tokens: int = typer.Option(16, "--memory-tokens", min=1, help="Prefix length (--design prefix)."),
    compress_rank: int = typer.Option(
        4, "--compress-rank", min=0, help="Rank of the LoRA on the memory positions (--design prefix; 0: none)."
    ),
    chunk_tokens: int = typer.Option(
        256, "--chunk-tokens", min=8, help="Tokens per memory chunk; longer documents join chunks (--design prefix)."
    ),
    distractor: float = typer.Option(
        0.0, "--distractor", min=0, max=1, help="Share of steps with an unrelated document's prefix joined in."
    ),
    heldout: Path | None = typer.Option(
        None, "--heldout", help="A held-out set (`loracle hypernet-data`, another seed) for the held-out KL."
    ),
    eval_every: int = typer.Option(0, "--eval-every", min=0, help="Steps between held-out KL lines in the log."),
    eval_docs: int = typer.Option(32, "--eval-docs", min=1, help="Held-out documents each such line averages."),
    ship: bool = typer.Option(
        False, "--ship", help="Afterwards, export the weights (fp16) as the packaged checkpoint."
    ),
    model: str = ModelOption,
    threads: int = ThreadsOption,
) -> None:
    """Train the hypernetwork that writes documents into LoRA adapters.

    Example: nice -n 10 loracle train-hypernet --data data/hn --out runs/small --hours 1 --resume --threads 1

    Memory tokens: nice -n 19 loracle train-hypernet --design prefix --data data/hn --heldout data/val --eval-every 100
    """
    from loracle.learners.hypernet.curve import plot_curve, read_heldout, read_log
    from loracle.learners.hypernet.dataset import TrainingSet
    from loracle.learners.hypernet.train import LOG, TrainConfig, default_train_dir, train_with_progress

    limit = hours * 60 + max_minutes
    options = locals()  # the options that are TrainConfig's fields, by the same names
    chosen = {f.name: options[f.name] for f in fields(TrainConfig) if f.name in options and f.name != "steps"}
    config = TrainConfig(steps=steps if steps is not None else (10**9 if limit else 300), **chosen)
    lm = load_base(model, threads)
    training_set = TrainingSet.load(data, lm.fingerprint) if data else None
    heldout_set = TrainingSet.load(heldout, lm.fingerprint) if heldout else None
    if eval_every and heldout_set is None:
        raise LoracleError("--eval-every: needs a held-out set (--heldout DIR)")
    out = out or default_train_dir(lm.name)
    report = train_with_progress(
        lm, config, out, max_minutes=limit, ship=ship, data=training_set, resume=resume, heldout=heldout_set
    )
    console.print(report)
    if plot:
        plot_curve(read_log(out / LOG), plot, heldout=read_heldout(out / LOG))
        console.print(f"learning curve: {plot}")
