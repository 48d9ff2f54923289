"""Crash scenarios: kill -9 a command at one of its commit points, run it again, and check nothing was lost.

Each scenario builds a knowledge base, runs a command (ingest, compile, watch, adapters merge, learn --save)
with LORACLE_CRASH_AT naming a point (see loracle.crash), checks the process really died there, reruns it,
and returns the problems it finds (none when nothing was lost or left half-written):
- the rerun succeeds, `status` says up to date with every page in the index, `lint` finds no page missing
  from the index and no broken link;
- the wiki is the same as a run that never crashed (every file but log.md), and every adapter is complete
  and compiled from the same text as one that never crashed;
- what a crash interrupted replacing (an adapter, a merge, a checkpoint) is still the old one, whole;
- no visible file or folder is half-written, and no hidden temporary file is left in the wiki.
The crash tests run them with `ForkedCli`; benchmarks/robustness.py runs them on the installed executable.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from loracle.adapters.store import check_adapter_folder
from loracle.sources import source_id
from loracle.wiki import init_kb
from tests.crash.runner import Cli, Result, run, wait_for
from tests.e2e.writer import use_writer

SOURCES = {
    "corra.md": "# Corra River\n\nThe Corra River flows past the Kestrel Valley Observatory.\nIt freezes in January.\n",
    "observatory.md": "# Kestrel Valley Observatory\n\nThe Kestrel Valley Observatory stands above the Corra River.\n",
    "varn.md": "# Varn Station\n\nVarn Station sits where the Corra River meets the sea.\n",
}
#: the page the writer endpoint makes for the Corra River, and the adapter ids of two pages
CORRA_PAGE = "entities/corra-river.md"
CORRA, OBSERVATORY = "entities-corra-river", "entities-kestrel-valley-observatory"
#: test-time training at its smallest: the learner that compiles on any base model, in well under a second
TTT = ["--learner", "ttt", "-o", "steps_per_doc=1", "-o", "max_sentences=1", "-o", "general_examples=2"]


def make_tiny_model(folder: Path) -> Path:
    """The tests' tiny Llama (tests/conftest.py) saved as a Hugging Face folder a knowledge base can name."""
    from tests.conftest import build_tiny_model, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    build_tiny_model(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@dataclass
class Lab:
    """What every scenario needs: a CLI to run, a folder of its own, the writer endpoint and a tiny model."""

    cli: Cli
    root: Path
    endpoint: str
    model: Path

    def kb(self, name: str, ingest: tuple[str, ...] = ()) -> Path:
        """A new knowledge base using the writer endpoint and the tiny model, these sources ingested."""
        kb = init_kb(self.root / name).root
        use_writer(kb, self.endpoint)
        config = (kb / "loracle.toml").read_text(encoding="utf-8")
        (kb / "loracle.toml").write_text(config.replace('base = "embedded"', f'base = "{self.model}"'), "utf-8")
        if ingest:
            done = self.run("ingest", *(self.sources(ingest) / n for n in ingest), "--kb", kb)
            assert done.returncode == 0, done.output
        return kb

    def sources(self, names: tuple[str, ...] = tuple(SOURCES)) -> Path:
        folder = self.root / "in"
        folder.mkdir(exist_ok=True)
        for name in names:
            (folder / name).write_text(SOURCES[name], encoding="utf-8")
        return folder

    def run(self, *args: str | Path, crash_at: str | None = None) -> Result:
        return run(self.cli, *args, crash_at=crash_at)

    def crash(self, point: str, *args: str | Path) -> list[str]:
        """Run a command that must die at `point`."""
        done = self.run(*args, crash_at=point)
        return [] if done.killed else [f"{args[0]} did not crash at {point} (exit {done.returncode}):\n{done.output}"]

    def ok(self, *args: str | Path) -> list[str]:
        """Run a command that must succeed."""
        done = self.run(*args)
        return [] if done.returncode == 0 else [f"{' '.join(map(str, args[:2]))} failed:\n{done.output}"]

    def healthy(self, kb: Path) -> list[str]:
        """What `status` and `lint` say, and whether anything visible is half-written."""
        problems = []
        status = self.run("status", "--json", "--kb", kb)
        lint = self.run("lint", "--json", "--no-llm", "--exit-zero", "--kb", kb)
        for name, done in (("status", status), ("lint", lint)):
            if done.returncode != 0:
                return [f"{name} failed:\n{done.output}"]
        state = json.loads(status.output)
        if state["stale"] or state["unreadable"] or state["unindexed_pages"]:
            problems.append(f"status is not clean: {status.output}")
        counts = json.loads(lint.output)["counts"]
        if counts["missing_from_index"] or counts["broken_link"]:
            problems.append(f"lint finds pages missing from the index or broken links: {counts}")
        leftovers = [p.name for p in (kb / "wiki").rglob(".*.tmp")]
        if leftovers:
            problems.append(f"temporary files left in the wiki: {leftovers}")
        return problems + adapter_problems(kb)


def adapter_problems(kb: Path) -> list[str]:
    """Every visible adapter folder must be complete, with weights that parse."""
    problems = []
    folder = kb / "adapters"
    for adapter in sorted(folder.iterdir()) if folder.is_dir() else []:
        if adapter.name.startswith("."):
            continue
        try:
            check_adapter_folder(adapter)
            with safe_open(str(adapter / "adapter_model.safetensors"), framework="pt") as weights:
                list(weights.keys())
        except Exception as exc:
            problems.append(f"adapter {adapter.name} is broken: {exc}")
    return problems


def wiki_files(kb: Path) -> dict[str, str]:
    """Every visible file of the wiki but the log (which records the crashed run too)."""
    wiki = kb / "wiki"
    return {
        p.relative_to(wiki).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(wiki.rglob("*"))
        if p.is_file() and p.name != "log.md" and not any(part.startswith(".") for part in p.relative_to(wiki).parts)
    }


def compiled(kb: Path) -> dict[str, str]:
    """Adapter id -> the content hash it was compiled from."""
    folder = kb / "adapters"
    return {
        p.name: json.loads((p / "manifest.json").read_text())["content_hash"]
        for p in sorted(folder.iterdir())
        if not p.name.startswith(".") and (p / "manifest.json").is_file()
    }


def differences(what: str, got: dict, want: dict) -> list[str]:
    if got == want:
        return []
    changed = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    return [f"{what} differs from a run that never crashed: {changed}"]


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# --- the scenarios ---


def ingest_crash(point: str) -> Callable[[Lab], list[str]]:
    """Ingest three sources, killed at `point`; the rerun must end where a run that never crashed ends."""

    def scenario(lab: Lab) -> list[str]:
        sources = lab.sources()
        reference, kb = lab.kb("reference"), lab.kb("kb")
        problems = lab.ok("ingest", sources, "--kb", reference)
        problems += lab.crash(point, "ingest", sources, "--kb", kb)
        problems += lab.ok("ingest", sources, "--kb", kb)
        problems += differences("the wiki", wiki_files(kb), wiki_files(reference))
        return problems + lab.healthy(kb)

    return scenario


def compile_crash(point: str) -> Callable[[Lab], list[str]]:
    """Compile an ingested wiki, killed at `point`; the rerun must compile what is missing and nothing twice."""

    def scenario(lab: Lab) -> list[str]:
        reference, kb = lab.kb("reference", tuple(SOURCES)), lab.kb("kb", tuple(SOURCES))
        problems = lab.ok("compile", "--kb", reference, *TTT)
        problems += lab.crash(point, "compile", "--kb", kb, *TTT)
        problems += adapter_problems(kb)  # what the crash left must already be whole
        problems += lab.ok("compile", "--kb", kb, *TTT)
        problems += differences("the adapters", compiled(kb), compiled(reference))
        hidden = [p.name for p in (kb / "adapters").iterdir() if p.name.startswith(".")]
        problems += [f"leftovers in adapters/ after the rerun: {hidden}"] if hidden else []
        return problems + lab.healthy(kb)

    return scenario


def edit(kb: Path, page: str) -> None:
    """A person adds a line to a page."""
    path = kb / "wiki" / page
    path.write_text(path.read_text(encoding="utf-8") + "\nIt floods each spring.\n", encoding="utf-8")


def recompile_swap(lab: Lab) -> list[str]:
    """An edited page's new adapter is about to replace the old one when the process dies: the old one stays."""
    kb = lab.kb("kb", tuple(SOURCES))
    problems = lab.ok("compile", "--kb", kb, *TTT)
    before = compiled(kb)
    edit(kb, CORRA_PAGE)
    problems += lab.crash("folder-swap@2", "compile", "--kb", kb, *TTT)  # @1: the learner's own staging write
    problems += adapter_problems(kb) + differences("the adapters after the crash", compiled(kb), before)
    problems += lab.ok("compile", "--kb", kb, *TTT)
    if compiled(kb)[CORRA] == before[CORRA]:
        problems.append("the rerun did not compile the edited page")
    return problems + lab.healthy(kb)


def merge_swap(lab: Lab) -> list[str]:
    """`adapters merge --out` over an earlier merge dies as the new one replaces it: the old one stays."""
    kb = lab.kb("kb", tuple(SOURCES))
    problems = lab.ok("compile", "--kb", kb, *TTT)
    merge = ["adapters", "merge", CORRA, OBSERVATORY, "--out", "both", "--method", "cat", "--kb", kb]
    problems += lab.ok(*merge)
    before = file_bytes(kb / "adapters" / "both")
    # @1: the merge writes its own staging folder; @2: that folder replaces the old merge in the store
    problems += lab.crash("folder-swap@2", *merge, "--weights", "1,0.5")
    if file_bytes(kb / "adapters" / "both") != before:
        problems.append("the earlier merge was changed or lost by the crash")
    problems += lab.ok(*merge, "--weights", "1,0.5")
    if json.loads((kb / "adapters" / "both" / "manifest.json").read_text())["merge"]["weights"] != [1, 0.5]:
        problems.append("the rerun did not write the new merge")
    return problems + adapter_problems(kb)


def learn_swap(lab: Lab) -> list[str]:
    """`learn --save` over an earlier checkpoint dies as the new one replaces it: the old one stays usable."""
    kb = lab.kb("kb")
    one, folder = lab.sources(("corra.md",)) / "corra.md", lab.sources()
    learn = ["learn", "--learner", "kstore", "--save", "notes", "--kb", kb, "--model", lab.model]
    problems = lab.ok(*learn, one)
    checkpoint = kb / ".loracle" / "checkpoints" / "notes"
    before = file_bytes(checkpoint)
    problems += lab.crash("folder-swap", *learn, folder)
    if file_bytes(checkpoint) != before:
        problems.append("the earlier checkpoint was changed or lost by the crash")
    problems += lab.ok("ask", "Where does the Corra flow?", "--load", "notes", "--kb", kb, "--model", lab.model)
    problems += lab.ok(*learn, folder)
    if file_bytes(checkpoint) == before:
        problems.append("the rerun did not save the new checkpoint")
    leftovers = [p.name for p in checkpoint.parent.iterdir() if p.name.startswith(".")]
    return problems + ([f"leftovers beside the checkpoint: {leftovers}"] if leftovers else [])


def watch_crash(point: str, change: Callable[[Lab, Path], None]) -> Callable[[Lab], list[str]]:
    """`watch` dies at `point` while handling a change; a restarted watch catches up."""

    def scenario(lab: Lab) -> list[str]:
        kb = lab.kb("kb", ("corra.md", "observatory.md"))
        problems = lab.ok("compile", "--kb", kb, *TTT)
        watcher = lab.cli.start("watch", "--kb", kb, "--debounce", "0.1", *TTT, crash_at=point)
        wait_for(watcher, "watching ")
        change(lab, kb)
        done = watcher.wait(timeout=120)
        problems += [] if done.killed else [f"watch did not crash at {point} (exit {done.returncode}):\n{done.output}"]
        again = lab.cli.start("watch", "--kb", kb, "--debounce", "0.1", *TTT)
        wait_for(again, "watching ")
        again.interrupt()
        done = again.wait(timeout=60)
        problems += [] if done.returncode == 0 else [f"the restarted watch failed:\n{done.output}"]
        wiki = kb / "wiki"
        pages = {source_id(p.relative_to(wiki)) for p in wiki.rglob("*.md")} - {"index", "log", "schema"}
        missing = sorted(pages - set(compiled(kb)))
        problems += [f"pages without an adapter after the restart: {missing}"] if missing else []
        return problems + lab.healthy(kb)

    return scenario


def save_source(lab: Lab, kb: Path) -> None:
    shutil.copy(lab.sources(("varn.md",)) / "varn.md", kb / "raw" / "varn.md")


def edit_page(lab: Lab, kb: Path) -> None:
    edit(kb, CORRA_PAGE)


#: scenario name -> what it does; each kills a command at a different commit point
SCENARIOS: dict[str, Callable[[Lab], list[str]]] = {
    "ingest: a source copied into raw/, no page yet": ingest_crash("ingest-raw-copied"),
    "ingest: the 2nd source's pages written, not recorded": ingest_crash("ingest-pages-written@2"),
    "ingest: every source recorded, index.md not rebuilt": ingest_crash("ingest-source-saved@3"),
    "ingest: index.md rebuilt, its lines not recorded": ingest_crash("ingest-index-written"),
    "ingest: a page written beside its target, not renamed": ingest_crash("file-replace@4"),
    "compile: the 2nd adapter staged, not published": compile_crash("compile-staged@2"),
    "compile: the 1st adapter published, the rest not": compile_crash("adapter-published"),
    "compile: a new adapter about to replace the old": recompile_swap,
    "adapters merge: about to replace an earlier merge": merge_swap,
    "learn --save: about to replace an earlier checkpoint": learn_swap,
    "watch: a saved raw/ source recorded, index not rebuilt": watch_crash("ingest-source-saved", save_source),
    "watch: an edited page's adapter published": watch_crash("adapter-published", edit_page),
}
