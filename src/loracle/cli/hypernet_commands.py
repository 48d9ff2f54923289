"""`loracle train-hypernet`: train the doc-to-LoRA hypernetwork by context distillation (resumable)."""

from __future__ import annotations

from pathlib import Path

import typer

from loracle.cli.app import ModelOption, ThreadsOption, app, console, load_base


@app.command("train-hypernet")
def train_hypernet(
    steps: int = typer.Option(300, "--steps", help="Train until this many steps in total (a resumed run continues)."),
    out: Path | None = typer.Option(
        None, "--out", help="Checkpoint folder (default: <cache>/hypernet-train/<model>); resumed if it exists."
    ),
    max_minutes: float = typer.Option(0, "--max-minutes", help="Stop (and checkpoint) after this much wall time."),
    lr: float = typer.Option(1e-3, "--lr", help="AdamW learning rate."),
    rank: int = typer.Option(8, "--rank", help="LoRA rank per chunk (new runs only)."),
    wiki_fraction: float = typer.Option(0.25, "--wiki-fraction", help="Share of real Wikipedia paragraphs."),
    checkpoint_every: int = typer.Option(25, "--checkpoint-every", help="Steps between checkpoints."),
    seed: int = typer.Option(0, "--seed", help="Seed of the network's init and of the training data."),
    ship: bool = typer.Option(
        False, "--ship", help="Afterwards, export the weights (fp16) as the packaged checkpoint."
    ),
    model: str = ModelOption,
    threads: int = ThreadsOption,
) -> None:
    """Train the hypernetwork that writes documents into LoRA adapters.

    Example: nice -n 10 loracle train-hypernet --steps 300 --max-minutes 30 --threads 1
    """
    from loracle.learners.hypernet.train import TrainConfig, train_with_progress

    lm = load_base(model, threads)
    config = TrainConfig(
        steps=steps, lr=lr, rank=rank, wiki_fraction=wiki_fraction, checkpoint_every=checkpoint_every, seed=seed
    )
    report = train_with_progress(lm, config, out, max_minutes=max_minutes, ship=ship)
    console.print(report)
