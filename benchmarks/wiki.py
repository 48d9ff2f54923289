"""Wiki ingest on the embedded model: today's code against the code before issue 41, on the same sources.

Two corpora, each ingested as one folder into a fresh knowledge base by both versions (the baseline runs
from `git archive` of BASELINE in a subprocess, in the order old, new, new, old so that a change of load
on the machine touches both alike): eight generated documents that link each other by title, alias and
label (benchmarks/wikidocs.py), and openings of Wikipedia articles. Measured on each wiki:

- seconds and LLM calls per source;
- the share of summary and description sentences the support check finds in their source;
- links that resolve under Obsidian's rules (by file name or path; an alias does not resolve a link);
- lint findings (no LLM) on the fresh wiki, errors and warnings;
- junk entity and concept pages, on the pages labelled by hand in data/wiki_pages.jsonl;
- the support check's own precision and recall on the sentences labelled by hand in
  data/wiki_support/labels.jsonl.

    .venv/bin/python -m benchmarks.wiki [--wikipedia 6] [--baseline f895a30]

With --engines torch,openvino it measures instead today's code decoding with each engine, on the same sources
(order torch, openvino on the generated corpus, openvino, torch on Wikipedia; --generated N keeps the first N
generated documents), into results/wiki_engine.json: seconds per source and their ratio, source by source.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from io import BytesIO
from pathlib import Path

from benchmarks.common import machine_info, row, write_result
from benchmarks.wikidocs import generated_sources, wikipedia_sources
from loracle.config import Config
from loracle.llm import make_llm
from loracle.sources.sentences import split_sentences
from loracle.wiki import ingest, init_kb, lint
from loracle.wiki.extract import UNVERIFIED_MARK, blank_frontmatter
from loracle.wiki.links import LinkGraph
from loracle.wiki.pages import read_page
from loracle.wiki.sourcetext import plain_text
from loracle.wiki.support import SupportChecker

BASELINE = "f895a30"  # the last commit before issue 41: the writer's own summaries, pages named by slug
DATA = Path(__file__).parent / "data"
SUPPORT_LABELS = DATA / "wiki_support" / "labels.jsonl"
PAGE_LABELS = DATA / "wiki_pages.jsonl"
REPO = Path(__file__).parents[1]

WORKER = """
import json, sys
from pathlib import Path
import loracle
from loracle.config import Config
from loracle.llm import make_llm
from loracle.wiki import ingest, init_kb
llm = make_llm(Config(), "writer")
llm.complete([{"role": "user", "content": "Hi"}], max_tokens=1)
print(json.dumps({"ready": loracle.__file__}), flush=True)
for line in sys.stdin:
    job = json.loads(line)
    report = ingest(init_kb(Path(job["kb"])), [Path(job["folder"])], llm)
    keep = ("status", "seconds", "llm_calls", "error")
    print(json.dumps([{k: getattr(r, k) for k in keep} for r in report.results]), flush=True)
"""


class Baseline:
    """The wiki code of an older commit, in a subprocess with the embedded model loaded once."""

    def __init__(self, ref: str, folder: Path) -> None:
        archive = subprocess.run(["git", "archive", ref, "src"], cwd=REPO, capture_output=True, check=True).stdout
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(folder, filter="data")
        env = {**os.environ, "PYTHONPATH": str(folder / "src")}
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        ready = json.loads(self.process.stdout.readline())["ready"]
        if not Path(ready).is_relative_to(folder):
            raise SystemExit(f"the baseline imported {ready}, not the code of {ref}")

    def ingest(self, kb: Path, folder: Path) -> list[dict]:
        self.process.stdin.write(json.dumps({"kb": str(kb), "folder": str(folder)}) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def ingest_new(kb_root: Path, folder: Path, llm) -> list[dict]:
    report = ingest(init_kb(kb_root), [folder], llm)
    return [
        {"status": r.status, "seconds": r.seconds, "llm_calls": r.llm_calls, "error": r.error, "notes": r.notes}
        for r in report.results
    ]


def raw_text(kb_root: Path, source: str) -> str:
    path = kb_root / source
    text = path.read_text(encoding="utf-8")
    return blank_frontmatter(text) if path.suffix == ".md" else text


def sentence_support(kb_root: Path) -> dict:
    """Summary and description sentences, and how many of them the support check finds in their source."""
    counts = Counter()
    unsupported: list[str] = []
    graph = LinkGraph(kb_root / "wiki")
    for page in graph.content_pages():
        kind = {"source": "summary", "entity": "description", "concept": "description"}.get(page.type)
        section = read_page(kb_root / "wiki" / page.rel).section("Summary" if kind == "summary" else "Description")
        if kind is None or section is None or not section.text.strip():
            continue
        sources = [str(s) for s in page.frontmatter.get("sources") or []]
        checkers = [SupportChecker(raw_text(kb_root, s)) for s in sources if (kb_root / s).is_file()]
        marked = section.text.count(UNVERIFIED_MARK)
        source_text = " ".join(plain_text(raw_text(kb_root, s)) for s in sources if (kb_root / s).is_file())
        for sentence in split_sentences(section.text.replace(UNVERIFIED_MARK, ""), min_words=2):
            counts[f"{kind}_sentences"] += 1
            counts[f"{kind}_as_written"] += plain_text(sentence) in source_text
            if any(c.check(sentence).supported for c in checkers):
                counts[f"{kind}_supported"] += 1
            else:
                unsupported.append(f"{page.rel}: {sentence}")
        counts[f"{kind}_marked"] += marked
    return {**counts, "unsupported": unsupported}


def measure(kb_root: Path, runs: list[dict]) -> dict:
    graph = LinkGraph(kb_root / "wiki")
    strict, total = graph.link_counts(by_alias=False)
    lenient, _ = graph.link_counts()
    report = lint(init_kb(kb_root))
    ok = [r for r in runs if r["status"] == "added"]
    return {
        "sources": len(runs),
        "added": len(ok),
        "seconds": [round(r["seconds"], 2) for r in ok],
        "llm_calls": [r["llm_calls"] for r in ok],
        "pages": dict(Counter(p.type for p in graph.content_pages())),
        "links": total,
        "links_obsidian": strict,
        "links_with_aliases": lenient,
        "broken_obsidian": [
            f"{p.rel}: [[{link.target}]]"
            for p in graph.pages.values()
            for link in p.links
            if link.target and graph.resolve(link.target, by_alias=False) is None
        ][:20],
        "lint_counts": {k: v for k, v in report.by_kind().items() if v},
        "lint_errors": len(report.errors),
        "lint_warnings": len(report.warnings),
        "lint_findings": [f"{f.kind} {f.page}: {f.message}" for f in report.findings][:20],
        "support": sentence_support(kb_root),
        "titles": sorted(p.title for p in graph.content_pages() if p.type in ("entity", "concept")),
        "failed": [r for r in runs if r["status"] != "added"],
    }


def junk_share(corpora: dict[str, dict]) -> tuple[int, int, list[str]]:
    """(junk pages, labelled pages, pages without a label) over the new wikis' entity and concept pages."""
    labels = {}
    if PAGE_LABELS.exists():
        for line in PAGE_LABELS.read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            labels[(item["corpus"], item["title"])] = item["junk"]
    junk = labelled = 0
    unlabelled = []
    for corpus, result in corpora.items():
        for title in result["titles"]:
            if (corpus, title) in labels:
                labelled += 1
                junk += labels[(corpus, title)]
            else:
                unlabelled.append(f"{corpus}: {title}")
    return junk, labelled, unlabelled


def checker_quality() -> dict:
    """The support check against the hand labels: precision and recall of "supported", per window size."""
    rows = [json.loads(line) for line in SUPPORT_LABELS.read_text(encoding="utf-8").splitlines()]
    sources = SUPPORT_LABELS.parent / "sources"
    out = {}
    for window in (1, 2, 3):
        checkers: dict[str, SupportChecker] = {}
        by_origin: dict[str, Counter] = {}
        for item in rows:
            checker = checkers.get(item["source"])
            if checker is None:
                text = blank_frontmatter((sources / f"{item['source']}.md").read_text(encoding="utf-8"))
                checker = checkers[item["source"]] = SupportChecker(text, window)
            said = checker.check(item["sentence"]).supported
            outcome = ("t" if said == item["supported"] else "f") + ("p" if said else "n")
            for origin in ("all", item["origin"]):
                by_origin.setdefault(origin, Counter())[outcome] += 1
        out[window] = {origin: _scores(c) for origin, c in by_origin.items()}
    out["labelled"] = dict(Counter("supported" if r["supported"] else "unsupported" for r in rows))
    return out


def _scores(c: Counter) -> dict:
    precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else None
    recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else None
    return {"precision": precision, "recall": recall, **c}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wikipedia", type=int, default=6, help="Wikipedia openings in the real-text corpus")
    parser.add_argument("--baseline", default=BASELINE, help="the commit whose wiki code is the baseline")
    parser.add_argument("--engines", default="", help="torch,openvino: compare the decode engines instead")
    parser.add_argument("--generated", type=int, default=None, help="with --engines: generated documents kept")
    args = parser.parse_args()
    if args.engines:
        if sorted(args.engines.split(",")) != ["openvino", "torch"]:
            parser.error("--engines takes torch,openvino")
        compare_engines(args)
        return
    machine = machine_info()
    quality = checker_quality()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        folders = {"generated": tmp_path / "generated", "wikipedia": tmp_path / "wikipedia"}
        generated_sources(folders["generated"])
        wikipedia_sources(folders["wikipedia"], args.wikipedia)
        llm = make_llm(Config(), "writer")
        started = time.perf_counter()
        llm.complete([{"role": "user", "content": "Hi"}], max_tokens=1)  # load the model outside the timings
        load_s = time.perf_counter() - started
        baseline = Baseline(args.baseline, tmp_path / "baseline")
        load_before = os.getloadavg()[0]
        runs: dict[tuple[str, str], list[dict]] = {}
        for corpus, version in (("generated", "old"), ("generated", "new"), ("wikipedia", "new"), ("wikipedia", "old")):
            kb_root = tmp_path / f"{corpus}-{version}"
            if version == "old":
                runs[(corpus, version)] = baseline.ingest(kb_root, folders[corpus])
            else:
                runs[(corpus, version)] = ingest_new(kb_root, folders[corpus], llm)
            print(f"{corpus} {version}: {[round(r['seconds'], 1) for r in runs[(corpus, version)]]}", flush=True)
        baseline.close()
        results = {
            f"{corpus}-{version}": measure(tmp_path / f"{corpus}-{version}", found)
            for (corpus, version), found in runs.items()
        }
    new = {c: results[f"{c}-new"] for c in folders}
    rows = timing_rows(results) + quality_rows(results, new, quality)
    rows.append(row("model load (first call)", load_s, "s"))
    data = {
        "baseline": args.baseline,
        "results": results,
        "checker": quality,
        "load_avg_1m_before_ingest": load_before,
        "load_avg_1m_after": os.getloadavg()[0],
    }
    print(write_result("wiki", rows, data, machine))
    for r in rows:
        print(f"{r['metric']}: {r['value']} {r['unit']} {r['note']}")


def compare_engines(args: argparse.Namespace) -> None:
    """Today's wiki code on the same sources, decoding with torch and with the OpenVINO engine (same process)."""
    from loracle.model.engine import select_engine

    machine = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        folders = {"generated": tmp_path / "generated", "wikipedia": tmp_path / "wikipedia"}
        generated = sorted(generated_sources(folders["generated"]))
        for extra in generated[args.generated :] if args.generated is not None else []:
            extra.unlink()
        wikipedia_sources(folders["wikipedia"], args.wikipedia)
        llm = make_llm(Config(), "writer")
        for engine in ("torch", "openvino"):  # load the model and prepare each engine outside the timings
            select_engine(engine)
            llm.complete([{"role": "user", "content": "Hi"}], max_tokens=2)
        runs: dict[str, dict[str, list[dict]]] = {}
        loads = [os.getloadavg()[0]]
        order = (("generated", "torch"), ("generated", "openvino"), ("wikipedia", "openvino"), ("wikipedia", "torch"))
        for corpus, engine in order:
            select_engine(engine)
            runs.setdefault(corpus, {})[engine] = ingest_new(tmp_path / f"{corpus}-{engine}", folders[corpus], llm)
            loads.append(os.getloadavg()[0])
            print(f"{corpus} {engine}: {[round(r['seconds'], 1) for r in runs[corpus][engine]]}", flush=True)
        select_engine("torch")
    rows = engine_timing_rows(runs, loads)
    data = {"runs": runs, "order": order, "load_avg_1m": loads, "generated": args.generated}
    print(write_result("wiki_engine", rows, data, machine))
    for r in rows:
        print(f"{r['metric']}: {r['value']} {r['unit']} {r['note']}")


def engine_timing_rows(runs: dict[str, dict[str, list[dict]]], loads: list[float]) -> list[dict]:
    """Seconds per source with each engine, and openvino / torch source by source (sources added by both)."""
    seconds = {
        engine: [r["seconds"] for c in runs.values() for r in c[engine] if r["status"] == "added"]
        for engine in ("torch", "openvino")
    }
    pairs = [
        a["seconds"] / b["seconds"]
        for corpus in runs.values()
        for a, b in zip(corpus["openvino"], corpus["torch"], strict=True)
        if a["status"] == b["status"] == "added"
    ]
    calls = {engine: [r["llm_calls"] for c in runs.values() for r in c[engine]] for engine in ("torch", "openvino")}
    note = f"{len(pairs)} sources added by both; load {min(loads):.1f}-{max(loads):.1f} (1-minute average)"
    rows = [
        row(f"ingest seconds per source (median), {engine}", statistics.median(seconds[engine]), "s", note=note)
        for engine in ("torch", "openvino")
        if seconds[engine]
    ]
    if pairs:
        rows.append(
            row(
                "ingest seconds per source, openvino / torch",
                statistics.median(pairs),
                "ratio",
                note=f"median of the per-source ratios; {note}; LLM calls per source "
                f"{statistics.mean(calls['openvino']):.1f} vs {statistics.mean(calls['torch']):.1f}",
            )
        )
    return rows


def timing_rows(results: dict[str, dict]) -> list[dict]:
    new = [s for c in ("generated", "wikipedia") for s in results[f"{c}-new"]["seconds"]]
    old = [s for c in ("generated", "wikipedia") for s in results[f"{c}-old"]["seconds"]]
    calls = [n for c in ("generated", "wikipedia") for n in results[f"{c}-new"]["llm_calls"]]
    old_calls = [n for c in ("generated", "wikipedia") for n in results[f"{c}-old"]["llm_calls"]]
    note = f"{len(new)} sources; before issue 41 (same run): median {statistics.median(old):.1f} s"
    return [
        row(
            "ingest seconds per source (median)",
            statistics.median(new),
            "s",
            f"<= {statistics.median(old):.1f} (before)",
            statistics.median(new) <= statistics.median(old),
            note,
        ),
        row("ingest seconds per source (mean)", statistics.mean(new), "s", note=f"before: {statistics.mean(old):.1f}"),
        row(
            "LLM calls per source (mean)",
            statistics.mean(calls),
            "calls",
            note=f"before: {statistics.mean(old_calls):.1f}",
        ),
    ]


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items())


def quality_rows(results: dict[str, dict], new: dict[str, dict], quality: dict) -> list[dict]:
    rows = []
    sentences = supported = 0
    for result in new.values():
        support = result["support"]
        sentences += support.get("summary_sentences", 0) + support.get("description_sentences", 0)
        supported += support.get("summary_supported", 0) + support.get("description_supported", 0)
    old_sentences = sum(results[f"{c}-old"]["support"].get("summary_sentences", 0) for c in new)
    old_supported = sum(results[f"{c}-old"]["support"].get("summary_supported", 0) for c in new)
    share = supported / sentences if sentences else 0.0
    rows.append(
        row(
            "summary and description sentences supported by their source",
            f"{supported}/{sentences} ({share:.1%})",
            "",
            ">= 98%",
            share >= 0.98,
            f"before: {old_supported}/{old_sentences} summary sentences",
        )
    )
    summaries = sum(r["support"].get("summary_sentences", 0) for r in new.values())
    as_written = sum(r["support"].get("summary_as_written", 0) for r in new.values())
    rows.append(
        row(
            "summary sentences shortened or trimmed",
            f"{summaries - as_written}/{summaries}",
            "",
            note="the rest are the source's sentences as written",
        )
    )
    for corpus, result in new.items():
        old = results[f"{corpus}-old"]
        rows.append(
            row(
                f"links that resolve by Obsidian's rules ({corpus})",
                f"{result['links_obsidian']}/{result['links']}",
                "",
                "all",
                result["links_obsidian"] == result["links"],
                f"before: {old['links_obsidian']}/{old['links']}",
            )
        )
        rows.append(
            row(
                f"lint findings on the fresh wiki ({corpus})",
                result["lint_errors"] + result["lint_warnings"],
                "findings",
                "0",
                result["lint_errors"] + result["lint_warnings"] == 0,
                f"before: {sum(old['lint_counts'].values())} ({_kinds(old['lint_counts'])})",
            )
        )
    junk, labelled, unlabelled = junk_share(new)
    share = junk / labelled if labelled else 0.0
    note = f"{len(unlabelled)} pages not labelled" if unlabelled else "every page labelled"
    rows.append(
        row(
            "junk entity and concept pages",
            f"{junk}/{labelled} ({share:.1%})",
            "",
            "<= 5%",
            share <= 0.05 and labelled > 0,
            note,
        )
    )
    default = quality[2]["all"]
    counts = quality["labelled"]
    others = "; ".join(
        f"window {w}: precision {quality[w]['all']['precision']:.2f}, recall {quality[w]['all']['recall']:.2f}"
        for w in (1, 3)
    )
    model = quality[2].get("SmolLM2-135M summary", {})
    rows.append(
        row(
            "support check precision (hand labels, window 2)",
            round(default["precision"], 3),
            "",
            note=f"{counts.get('supported', 0)} supported, {counts.get('unsupported', 0)} unsupported sentences; "
            f"on the 135M writer's own sentences: {model.get('precision') or 0:.2f}; {others}",
        )
    )
    rows.append(
        row(
            "support check recall (hand labels, window 2)",
            round(default["recall"], 3),
            "",
            note=f"on the 135M writer's own sentences: {model.get('recall') or 0:.2f}",
        )
    )
    return rows


if __name__ == "__main__":
    main()
