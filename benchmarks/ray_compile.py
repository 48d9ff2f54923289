"""Ray compile throughput: the fictional corpus' first documents compiled by `ttt`, locally and on a local Ray.

Run: nice -n 10 .venv/bin/python -m benchmarks.ray_compile [--docs 4] [--steps 8]

Rows: documents per minute with 1 and 2 Ray workers (each loads the embedded model once, 1 thread each) and
a local compile (1 thread), wall time including the workers' model load. On this shared 2-core machine two
workers share the same cores, so the rows measure the overhead and the per-worker cost, not a cluster.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import row, write_result
from loracle.knowledge_base import KnowledgeBase
from loracle.learners import learner_config
from loracle.model import load_model
from loracle.ray_compile import LearnerSetup, RayCompiler
from loracle.runtime import configure_threads

CORPUS = Path(__file__).parent / "data" / "fictional"
MODEL = "embedded"


def _kb(root: Path, docs: int) -> Path:
    """A knowledge base whose wiki holds the corpus' first `docs` documents."""
    for source in sorted(CORPUS.glob("*.md"))[:docs]:
        (root / "wiki").mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / "wiki" / source.name)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    import ray

    options = {"steps_per_doc": args.steps}
    config = learner_config("ttt", options)
    configure_threads(1)
    lm = load_model(MODEL)
    rows, data = [], {"docs": args.docs, "steps_per_doc": args.steps, "model": MODEL, "learner": "ttt", "runs": {}}
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        for label, workers in (("local", 0), ("ray-1", 1), ("ray-2", 2)):
            with tempfile.TemporaryDirectory() as tmp:
                root = _kb(Path(tmp), args.docs)
                compiler = (
                    RayCompiler(LearnerSetup(MODEL, "ttt", options, threads=1), "ttt", config, workers=workers)
                    if workers
                    else None
                )
                start = time.perf_counter()
                summary = KnowledgeBase(
                    root, learner="ttt", compiler=compiler, lm=lm, learner_options=options
                ).compile_all()
                wall = time.perf_counter() - start
                if compiler is not None:
                    compiler.close()
            if summary.failed or len(summary.compiled) != args.docs:
                raise SystemExit(f"{label}: compiled {summary.compiled}, failed {summary.failed}")
            per_doc = statistics.median(summary.compile_seconds.values())
            data["runs"][label] = {"wall_s": wall, "compile_seconds": summary.compile_seconds}
            what = "local compile, 1 thread" if not workers else f"{workers} Ray worker(s), 1 thread each"
            rows.append(row(f"{label}: documents per minute", round(60 * args.docs / wall, 2), "docs/min", note=what))
            rows.append(row(f"{label}: median seconds per document", round(per_doc, 2), "s", note="learner time"))
            print(f"{label}: {wall:.1f} s for {args.docs} documents (median {per_doc:.1f} s per document)")
    finally:
        ray.shutdown()
    local, one, two = (data["runs"][k]["wall_s"] for k in ("local", "ray-1", "ray-2"))
    rows.append(row("ray-2 speedup over local", round(local / two, 2), "x", note="2 workers share 2 busy cores"))
    outside = one - sum(data["runs"]["ray-1"]["compile_seconds"].values())
    rows.append(
        row("ray-1: seconds outside the learner", round(outside, 1), "s", note="worker start, model load, transfers")
    )
    rate = 60 * args.docs / one
    rows.append(
        row(
            "N machines, one worker each (estimate)",
            f"{rate:.2f} x N",
            "docs/min",
            note="per-document work: each worker pays the model load once; the driver writes every adapter",
        )
    )
    write_result("ray_compile", rows, data)


if __name__ == "__main__":
    main()
