"""The server's API fuzzed from its own OpenAPI schema (schemathesis): `python -m benchmarks.serve_fuzz`.

Every operation gets up to --examples requests that fit the schema and as many that break it, over real
HTTP to uvicorn, on the tiny test model (fuzzing tests the server's handling of input, not the model; the
tiny model keeps thousands of requests to minutes) with a knowledge base of linked pages, two adapters,
an unusable adapter folder and eval results, and a secret file beside it. Some requests get real model
names, adapter ids and page ids so they reach generation. A request fails when the server answers 5xx or
a server error inside a stream, drops the connection, answers an error without the OpenAI error body, or
returns the secret or the server's path to the knowledge base (tests/security/fuzzing.py).

Run: .venv/bin/python -m benchmarks.serve_fuzz [--examples 50] [--seed 35]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from tests.conftest import build_tiny_model, build_tiny_tokenizer
from tests.security.fuzzing import fuzz
from tests.security.kb import build_kb
from tests.security.test_fuzz_api import forbidden, known_values

from benchmarks.common import row, write_result
from benchmarks.serve_load import print_rows
from loracle.model.loader import LoadedModel, model_fingerprint
from loracle.serve.app import create_app
from loracle.serve.launch import background_server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=50, help="requests per operation and mode (at most)")
    parser.add_argument("--seed", type=int, default=35)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer))
    lm = LoadedModel(model, tokenizer, "tiny", "memory", model_fingerprint(model))
    kb = build_kb(Path(tempfile.mkdtemp(prefix="loracle-fuzz-")) / "kb", lm)
    started = time.perf_counter()
    with background_server(create_app(lm, kb, token="")) as url:
        report = fuzz(url, examples=args.examples, known=known_values(lm), forbidden=forbidden(kb), seed=args.seed)
    seconds = time.perf_counter() - started
    server_errors = sum(n for status, n in report.statuses.items() if status >= 500)
    statuses = ", ".join(f"{status}: {n}" for status, n in sorted(report.statuses.items()))
    rows = [
        row("fuzzed requests", report.requests, "", ">= 1000", report.requests >= 1000, f"{seconds:.0f} s; {statuses}"),
        row("responses 5xx", server_errors, "", "0", server_errors == 0),
        row(
            "failed requests (5xx, error in a stream, no response, no error body, a leak)",
            len(report.failures),
            "",
            "0",
            not report.failures,
            "; ".join(report.failures[:3])[:300],
        ),
        row("operations x modes fuzzed", len({k.rsplit(" -> ", 1)[0] for k in report.outcomes}), ""),
    ]
    data = {"examples": args.examples, "seed": args.seed, "seconds": seconds, **report.as_dict()}
    print_rows(rows, write_result("serve_fuzz", rows, data))


if __name__ == "__main__":
    main()
