"""Commands that build and manage adapters: compile, watch, adapters list|show|rm|merge|export."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from loracle.cli.app import ThreadsOption, app, console, err_console, finite, load_base
from loracle.cli.optional_value import optional_value_command
from loracle.learners import DEFAULT_COMPILE_LEARNER

if TYPE_CHECKING:
    from loracle.knowledge_base import KnowledgeBase
    from loracle.pipeline import CompileEvent, CompileSummary, WatchStatus

adapters_app = typer.Typer(help="List, inspect, remove, merge and export compiled adapters.", no_args_is_help=True)
app.add_typer(adapters_app, name="adapters")

KBOption = typer.Option(None, "--kb", help="The knowledge base folder (default: $LORACLE_KB or the working folder).")
LearnerOption = typer.Option(
    DEFAULT_COMPILE_LEARNER, "--learner", "-l", help="How to compile: ttt (trained per doc) or hypernet (one pass)."
)
ModelSpecOption = typer.Option(None, "--model", "-m", help="Base model (default: the knowledge base's config).")
LearnerOptions = typer.Option(
    [], "--option", "-o", help="A learner option KEY=VALUE (repeatable), e.g. top_k=2; `loracle learners` lists them."
)


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs, values read as JSON where they parse (numbers, true/false), else as text."""
    from loracle.errors import LoracleError

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise LoracleError(f"--option: expected KEY=VALUE, got {pair!r}")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


def open_kb(
    kb: Path | None, learner: str, source: str, model: str | None, threads: int, options: list[str]
) -> KnowledgeBase:
    from loracle.kb import find_kb
    from loracle.knowledge_base import KnowledgeBase
    from loracle.learners import learner_config

    paths = find_kb(kb)
    config = paths.config()
    learner_options = learner_config(learner, parse_options(options))  # refused before the model loads
    lm = load_base(model or config.model.base, threads or config.model.threads)
    return KnowledgeBase(paths.root, learner=learner, source=source, lm=lm, learner_options=learner_options)


@app.command("compile", cls=optional_value_command("--ray"))
def compile_command(
    kb: Path | None = KBOption,
    learner: str = LearnerOption,
    source: str = typer.Option("wiki", "--from", help="Compile wiki pages (wiki) or raw sources (raw)."),
    aggregate: bool = typer.Option(False, "--aggregate", help="Compile each page with the pages it links to."),
    batch_size: int = typer.Option(
        4, "--batch-size", min=1, help="Documents per forward pass, for learners that batch (hypernet)."
    ),
    model: str | None = ModelSpecOption,
    threads: int = ThreadsOption,
    option: list[str] = LearnerOptions,
    ray: str | None = typer.Option(
        None,
        "--ray",
        metavar="[ADDRESS]",
        help="Compile on Ray workers. --ray alone joins what ray.init() finds: $RAY_ADDRESS, else the cluster `ray "
        "start` last began on this machine, else a new local one. Or name it: ray://head:10001, auto (a running "
        "cluster, never a new one), local (always a new one).",
    ),
    ray_workers: int = typer.Option(
        0, "--ray-workers", min=0, help="Ray workers, each with the model loaded once (0: one per cluster CPU)."
    ),
) -> None:
    """Compile each new or changed document into adapters/<id>/; remove adapters of deleted documents.

    Example: loracle compile --kb my-kb --learner hypernet --from wiki
    Example: loracle compile --kb my-kb --learner ttt --ray ray://head:10001
    Example: loracle compile --kb my-kb --ray --ray-workers 2
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    knowledge = open_kb(kb, learner, source, model, threads, option)
    if ray is not None:
        knowledge = on_ray(knowledge, model, ray, ray_workers, threads)
    compiler = knowledge.compiler
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task(f"compiling with {compiler.name}", total=None)

        def progress(step: CompileEvent) -> None:
            bar.update(task, description=f"{step.event} {step.name}", completed=step.done, total=step.total)
            if step.seconds is not None:  # one line per document, its time: above the bar, or alone without one
                line = progress_line(step)
                (bar.console if err_console.is_terminal else err_console).print(line, markup=False, highlight=False)

        summary = knowledge.compile_all(aggregate=aggregate, batch_size=batch_size, progress=progress)
    print_summary(summary, knowledge.paths.adapters)
    if summary.failed and not summary.compiled and not summary.unchanged:
        raise typer.Exit(1)


def on_ray(knowledge: KnowledgeBase, model: str | None, address: str, workers: int, threads: int) -> KnowledgeBase:
    """The same knowledge base, compiling on Ray workers that each load the base model themselves; `address` ""
    is Ray's default (what ray.init() without one connects to or starts)."""
    from loracle.knowledge_base import KnowledgeBase
    from loracle.ray_compile import LearnerSetup, RayCompiler

    spec = model or knowledge.paths.config().model.base
    if Path(spec).expanduser().exists():  # a local folder or file: the same absolute path on every node
        spec = str(Path(spec).expanduser().resolve())
    config = knowledge.learner_config
    setup = LearnerSetup(spec, knowledge.learner, config.model_dump(mode="json"), threads=max(1, threads))
    compiler = RayCompiler(
        setup, knowledge.learner, config, address=address or None, workers=workers or None, cpus=setup.threads
    )
    return KnowledgeBase(
        knowledge.paths.root,
        learner=knowledge.learner,
        compiler=compiler,
        source=knowledge.source,
        lm=knowledge.lm,
        learner_options=config,
    )


def progress_line(step: CompileEvent) -> str:
    """`compiled ID in 12.3 s (2/5)`: one finished document."""
    return f"{step.event} {step.name} in {step.seconds or 0.0:.1f} s ({step.done}/{step.total})"


def print_summary(summary: CompileSummary, where: Path) -> None:
    console.print(
        f"compiled {len(summary.compiled)}, unchanged {len(summary.unchanged)}, removed {len(summary.removed)}, "
        f"failed {len(summary.failed)} in {summary.seconds:.1f} s -> {where}",
        highlight=False,
    )
    for failure in summary.failed:
        err_console.print(f"[yellow]skipped[/] {escape(failure.message)}", highlight=False, soft_wrap=True)


@app.command()
def watch(
    kb: Path | None = KBOption,
    learner: str = LearnerOption,
    source: str = typer.Option("wiki", "--from", help="Compile changed wiki pages (wiki) or raw sources (raw)."),
    aggregate: bool = typer.Option(False, "--aggregate", help="Compile each page with the pages it links to."),
    debounce: float = typer.Option(
        0.3, "--debounce", min=0.0, max=3600.0, callback=finite, help="Quiet seconds before compiling a saved file."
    ),
    ingest_raw: bool = typer.Option(True, "--ingest/--no-ingest", help="Ingest files saved in raw/ into the wiki."),
    model: str | None = ModelSpecOption,
    threads: int = ThreadsOption,
    option: list[str] = LearnerOptions,
) -> None:
    """Keep adapters current while you edit: each saved page is recompiled seconds later. Ctrl-C stops.

    Example: loracle watch --kb my-kb --learner hypernet
    """
    from rich.live import Live

    # Ctrl-C and SIGTERM stop cleanly even when started in the background, where SIGINT arrives ignored
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, signal.default_int_handler)
    knowledge = open_kb(kb, learner, source, model, threads, option)
    knowledge.compiler  # noqa: B018 - load the learner before the status line starts
    ingest = knowledge.wiki_ingest() if source == "wiki" and ingest_raw else None
    live = Live(status_line(None, knowledge), console=err_console, refresh_per_second=4)
    final: list[WatchStatus] = []
    with live:
        try:
            with knowledge.watch(
                aggregate=aggregate,
                debounce_s=debounce,
                ingest=ingest,
                on_change=lambda status: live.update(status_line(status, knowledge)),
            ) as watcher:
                final.append(watcher.status)
                console.print(f"watching {knowledge.source.root} (Ctrl-C stops)", markup=False, highlight=False)
                while True:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            pass
    done = final[0] if final else None
    console.print(f"stopped: {done.compiled if done else 0} compiled, {done.removed if done else 0} removed")


def status_line(status: WatchStatus | None, knowledge: KnowledgeBase) -> str:
    if status is None:
        return f"watching {knowledge.source.root} ..."
    latency = f", last {status.latencies[-1]:.1f} s after save" if status.latencies else ""
    failed = f", [yellow]{len(status.failed)} failed[/] ({status.failed[-1].message})" if status.failed else ""
    last = f", last {status.last}" if status.last else ""
    return f"[bold]{status.state}[/] · {status.compiled} compiled, {status.removed} removed{last}{latency}{failed}"


def kb_store(kb: Path | None) -> Any:
    from loracle.adapters.store import LocalAdapterStore
    from loracle.kb import find_kb

    return LocalAdapterStore(find_kb(kb).adapters)


def adapter_folder(kb: Path | None, name: str) -> Path:
    """An adapter given by id (in the knowledge base's store) or as a folder path."""
    candidate = Path(name)
    if ("/" in name or name.startswith(".")) and candidate.is_dir():
        return candidate
    return kb_store(kb).path(name)


@adapters_app.command("list")
def list_adapters(
    kb: Path | None = KBOption, as_json: bool = typer.Option(False, "--json", help="Print the list as JSON.")
) -> None:
    """Every adapter in the store: id (its folder), source, learner, size on disk, created, and any problem.

    Example: loracle adapters list --kb my-kb
    """
    from rich.table import Table

    found = kb_store(kb).inspect()
    if as_json:
        fields = ("id", "source", "learner", "inputs", "size_bytes", "created")
        rows = [{key: getattr(m, key) for key in fields} | {"problem": problem} for m, problem in found]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table("id", "source", "learner", "inputs", "KB", "created", "problem", box=None)
    table.columns[0].overflow = "fold"  # an id must stay whole to be copied
    for m, problem in found:
        size = f"{m.size_bytes / 1024:.0f}"
        table.add_row(escape(m.id), escape(m.source), escape(m.learner), str(len(m.inputs)), size, escape(m.created),
                      f"[red]{escape(problem)}[/]")  # fmt: skip
    console.print(table if found else "no adapters yet (run `loracle compile`)")


@adapters_app.command("show")
def show_adapter(name: str = typer.Argument(..., help="Adapter id or folder."), kb: Path | None = KBOption) -> None:
    """An adapter's manifest and PEFT config.

    Example: loracle adapters show kestrel-valley-observatory
    """
    from loracle.adapters.store import check_adapter_folder
    from loracle.model.adapters import read_adapter_config

    folder = adapter_folder(kb, name)
    manifest = check_adapter_folder(folder)
    config = read_adapter_config(folder)
    console.print_json(json.dumps({"folder": str(folder), "manifest": manifest.model_dump(), "peft": config}))


@adapters_app.command("rm")
def remove_adapters(names: list[str] = typer.Argument(..., help="Adapter ids."), kb: Path | None = KBOption) -> None:
    """Remove adapters from the store (a later compile rebuilds those whose documents still exist).

    Example: loracle adapters rm old-notes
    """
    store = kb_store(kb)
    for name in names:
        store.remove(name)
        console.print(f"removed {name}", markup=False, highlight=False)


@adapters_app.command("merge")
def merge_command(
    names: list[str] = typer.Argument(..., help="Adapter ids or folders (two or more)."),
    out: str = typer.Option(..., "--out", "-o", help="Id of the merged adapter in the store."),
    method: str = typer.Option("linear", "--method", help="linear (weighted sum), ties, or cat (concatenation)."),
    weights: str | None = typer.Option(None, "--weights", help="Comma-separated weights, e.g. 1,0.5"),
    density: float = typer.Option(
        0.5, "--density", min=0.01, max=1.0, callback=finite, help="TIES: fraction of each delta kept."
    ),
    kb: Path | None = KBOption,
    model: str | None = ModelSpecOption,
    threads: int = ThreadsOption,
) -> None:
    """Merge adapters into one new adapter in the store (through PEFT's add_weighted_adapter).

    Example: loracle adapters merge notes-a notes-b --out notes-ab --method ties --weights 1,0.5
    """
    from loracle.adapters.merge import merge_adapters
    from loracle.adapters.store import check_adapter_id
    from loracle.cli.app import parse_weights
    from loracle.errors import LoracleError
    from loracle.kb import find_kb

    paths = find_kb(kb)
    store = kb_store(kb)
    folders = [adapter_folder(kb, name) for name in names]
    weight_list = parse_weights(weights, len(folders))
    target = store.root / check_adapter_id(out)
    if any(folder.resolve() == target.resolve() for folder in folders):
        raise LoracleError(f"--out {out}: is one of the adapters being merged; give the merge a new id")
    lm = load_base(model or paths.config().model.base, threads)
    staging = store.staging_folder(check_adapter_id(out))
    try:
        merge_adapters(lm, folders, staging, weights=weight_list, method=method, density=density, adapter_id=out)
        store.put(out, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    console.print(f"merged {len(folders)} adapters ({method}) -> {store.path(out)}", markup=False, highlight=False)


@adapters_app.command("export")
def export_command(
    name: str = typer.Argument(..., help="Adapter id or folder."),
    out: Path = typer.Option(..., "--out", "-o", help="The .gguf file to write."),
    dtype: str = typer.Option("f32", "--dtype", help="f32 or f16."),
    force: bool = typer.Option(False, "--force", help="Replace the file --out names if it exists."),
    kb: Path | None = KBOption,
    model: str | None = ModelSpecOption,
) -> None:
    """Export an adapter as a GGUF LoRA for llama.cpp (llama-cli -m base.gguf --lora FILE); --out may be a
    folder, which gets <id>.gguf. An existing file is replaced only with --force.

    Example: loracle adapters export kestrel-valley-observatory --out observatory-lora.gguf
    """
    from loracle.adapters.gguf_export import export_gguf
    from loracle.errors import LoracleError
    from loracle.kb import find_kb
    from loracle.model.adapters import read_adapter_config

    folder = adapter_folder(kb, name)
    read_adapter_config(folder)  # a folder that is no adapter is refused before the model loads
    if out.is_dir():
        out = out / f"{folder.resolve().name}.gguf"
    if out.exists() and not force:  # before the model loads
        raise LoracleError(f"{out}: already exists; pass --force to replace it")
    lm = load_base(model or find_kb(kb).config().model.base)
    config = lm.model.config
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    export_gguf(folder, out, n_head=heads, n_kv_head=kv_heads, dtype=dtype)
    console.print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB)", markup=False, highlight=False)
