"""`loracle serve` under a bounded load on loopback, with the embedded model: `python -m benchmarks.serve_load`.

The real command runs in a subprocess on a temporary knowledge base with three adapters (random LoRA
weights, as benchmarks/serve.py writes them). For --seconds, --clients threads each send chats one after
another (half streamed, half whole), rotating over the base model, single adapters and a stacked pair;
one more client asks for long whole answers and gives up after a second (the server must stop those).
/health is polled throughout. Afterwards the server must still be up and answer a chat, and Ctrl-C must
stop it cleanly.

Reported: requests done and failed, throughput (requests and completion tokens per second), latency p50
and p95 of whole replies, time to first token and total time of streamed replies, the slowest /health.
Figures depend on the shared machine's load, which is recorded.

Run: .venv/bin/python -m benchmarks.serve_load [--seconds 120] [--clients 6] [--max-tokens 24]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import row, write_result
from benchmarks.serve import QUESTIONS, percentile, write_adapter
from loracle.kb import KBPaths
from loracle.model import load_model

ADAPTERS = ("alpha", "beta", "gamma")
#: what the clients ask for in turn: (model field, stacked adapters)
MIXES: list[tuple[str, list[dict[str, Any]]]] = [
    ("base", []),
    ("alpha", []),
    ("base:beta", []),
    ("gamma", [{"id": "alpha", "weight": 0.5}]),
]


def start_server(kb: Path) -> tuple[subprocess.Popen, str]:
    """`loracle serve --kb KB --port 0` in a subprocess; returns it and its URL once it says it is serving."""
    command = [sys.executable, "-c", "from loracle.cli import main; main()", "serve", "--kb", str(kb), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(r"at (http://\S+?)/ ", line)
        if found:
            threading.Thread(target=process.stdout.read, daemon=True).start()  # keep draining its output
            url = found.group(1)
            for _ in range(600):  # uvicorn accepts once the app has started
                try:
                    if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                        return process, url
                except httpx.TransportError:
                    time.sleep(0.1)
            break
    process.kill()
    raise RuntimeError(f"the server did not start (exit {process.wait()})")


def chat_body(index: int, max_tokens: int, stream: bool) -> dict[str, Any]:
    model, extra = MIXES[index % len(MIXES)]
    return {
        "model": model,
        "adapters": extra,
        "messages": [{"role": "user", "content": QUESTIONS[index % len(QUESTIONS)]}],
        "max_tokens": max_tokens,
        "stream": stream,
        "stream_options": {"include_usage": True} if stream else None,
    }


def one_request(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """Send one chat; its kind, model, latency, time to first token (streamed), completion tokens, error."""
    record: dict[str, Any] = {"kind": "stream" if body["stream"] else "whole", "model": body["model"], "error": None}
    start = time.perf_counter()
    try:
        if body["stream"]:
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if not line.startswith("data: {"):
                        continue
                    event = json.loads(line[6:])
                    if "error" in event:
                        record["error"] = event["error"]["message"]
                    elif event.get("usage"):
                        record["tokens"] = event["usage"]["completion_tokens"]
                    elif (
                        record.get("ttft_s") is None
                        and event["choices"]
                        and event["choices"][0]["delta"].get("content")
                    ):
                        record["ttft_s"] = time.perf_counter() - start
        else:
            response = client.post("/v1/chat/completions", json=body)
            response.raise_for_status()
            record["tokens"] = response.json()["usage"]["completion_tokens"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"[:200]
    record["seconds"] = time.perf_counter() - start
    return record


def run_load(url: str, seconds: float, clients: int, max_tokens: int) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    records: list[dict[str, Any]] = []
    abandoned: list[float] = []
    health: list[float] = []
    lock = threading.Lock()

    def client_loop(number: int) -> None:
        with httpx.Client(base_url=url, timeout=600) as client:
            index = number
            while time.monotonic() < deadline:
                record = one_request(client, chat_body(index, max_tokens, stream=number % 2 == 0))
                record["end"] = time.monotonic()
                with lock:
                    records.append(record)
                index += clients

    def impatient_loop() -> None:
        with httpx.Client(base_url=url, timeout=1.0) as client:
            index = 0
            while time.monotonic() < deadline:
                start = time.perf_counter()
                try:
                    client.post("/v1/chat/completions", json=chat_body(index, 256, stream=False))
                except httpx.TimeoutException:
                    abandoned.append(time.perf_counter() - start)
                index += 1

    def health_loop() -> None:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            ok = httpx.get(f"{url}/health", timeout=60).status_code == 200
            health.append(time.perf_counter() - start if ok else float("inf"))
            time.sleep(2)

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(clients)]
    threads += [threading.Thread(target=impatient_loop), threading.Thread(target=health_loop)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    return {"wall_s": wall, "records": records, "abandoned": len(abandoned), "health_s": health}


def summary(load: dict[str, Any]) -> dict[str, Any]:
    records = load["records"]
    done = [r for r in records if r["error"] is None]
    whole = [r["seconds"] for r in done if r["kind"] == "whole"]
    streamed = [r for r in done if r["kind"] == "stream"]
    ttft = [r["ttft_s"] for r in streamed if r.get("ttft_s") is not None]
    tokens = sum(r.get("tokens", 0) for r in done)
    return {
        "requests": len(records),
        "failed": len(records) - len(done),
        "errors": sorted({r["error"] for r in records if r["error"]})[:10],
        "requests_per_s": len(done) / load["wall_s"],
        "tokens_per_s": tokens / load["wall_s"],
        "whole_p50_s": statistics.median(whole) if whole else None,
        "whole_p95_s": percentile(whole, 0.95) if whole else None,
        "stream_ttft_p50_s": statistics.median(ttft) if ttft else None,
        "stream_ttft_p95_s": percentile(ttft, 0.95) if ttft else None,
        "stream_total_p95_s": percentile([r["seconds"] for r in streamed], 0.95) if streamed else None,
        "by_model": {m: sum(r["model"] == m for r in done) for m, _ in MIXES},
        "health_max_s": max(load["health_s"]) if load["health_s"] else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="loracle serve under a bounded load (see the module docstring)")
    parser.add_argument("--seconds", type=float, default=120, help="how long the clients keep sending")
    parser.add_argument("--clients", type=int, default=6, help="clients sending chats (half of them streamed)")
    parser.add_argument("--max-tokens", type=int, default=24, help="max_tokens of each chat")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="loracle-serve-load-"))
    (root / "loracle.toml").write_text("")
    lm = load_model("embedded")
    for seed, name in enumerate(ADAPTERS, start=1):
        write_adapter(lm, KBPaths(root).adapters / name, seed)
    del lm
    process, url = start_server(root)
    try:
        load = run_load(url, args.seconds, args.clients, args.max_tokens)
        alive = process.poll() is None
        after = one_request(httpx.Client(base_url=url, timeout=120), chat_body(1, 8, stream=False))
    finally:
        process.send_signal(signal.SIGINT)
        try:
            exit_code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            exit_code = None
    stats = summary(load)
    stats["load_avg_1m_at_end"] = os.getloadavg()[0]  # the machine is shared: how busy it was
    held = alive and after["error"] is None and stats["failed"] == 0
    rows = [
        row(
            "server held: up, no failed request, answers after the load",
            "yes" if held else "no",
            "",
            "yes",
            held,
            f"{args.clients} clients + 1 that gives up, {args.seconds:.0f} s; exit on Ctrl-C: {exit_code}; "
            f"load average at the end {stats['load_avg_1m_at_end']:.1f}",
        ),
        row("requests done / failed", f"{stats['requests'] - stats['failed']} / {stats['failed']}"),
        row("throughput", stats["requests_per_s"], "requests/s", note=f"{stats['tokens_per_s']:.1f} tokens/s"),
        row("whole replies: latency p50 / p95", _pair(stats["whole_p50_s"], stats["whole_p95_s"]), "s"),
        row(
            "streamed replies: first token p50 / p95",
            _pair(stats["stream_ttft_p50_s"], stats["stream_ttft_p95_s"]),
            "s",
        ),
        row("streamed replies: total p95", stats["stream_total_p95_s"], "s"),
        row("abandoned long requests (client gave up after 1 s)", load["abandoned"], ""),
        row("slowest /health during the load", stats["health_max_s"], "s"),
    ]
    data = {"args": vars(args), "summary": stats, "after": after, "exit_code": exit_code, "load": load}
    print_rows(rows, write_result("serve_load", rows, data))


def print_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """The rows a benchmark wrote, one a line, and where it wrote them."""
    print("\n".join(f"{r['metric']}: {r['value']} {r['unit']}  {r['target']}  {r['met']}  {r['note']}" for r in rows))
    print(f"wrote {path}")


def _pair(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a:.2f} / {b:.2f}"


if __name__ == "__main__":
    main()
