"""A canned OpenAI-compatible writer endpoint on loopback, configured in loracle.toml the way a user points
loracle at Ollama or llama.cpp: wiki commands run end to end with no model loaded for writing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

NAMES = ["Corra River", "Kestrel Valley Observatory", "Atlantis"]
SUMMARY = "The Corra River flows past the Kestrel Valley Observatory and powers its hydroelectric plant."


def send_json(handler: BaseHTTPRequestHandler, status: int, payload: object) -> None:
    """Answer a request with `payload` as JSON."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class _Writer(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        if "List the named" in prompt:
            content = "```json\n" + json.dumps({"entities": NAMES, "concepts": []}) + "\n```"
        else:
            content = SUMMARY
        send_json(self, 200, {"choices": [{"message": {"role": "assistant", "content": content}}], "usage": {}})

    def log_message(self, *args) -> None:
        pass


@contextmanager
def serve_writer() -> Iterator[str]:
    """The endpoint's base URL while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Writer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def use_writer(kb: Path, endpoint: str) -> None:
    """Point a knowledge base made by `loracle init` at the endpoint, for both the writer and the fast LLM."""
    config = (kb / "loracle.toml").read_text(encoding="utf-8")
    for role in ("fast", "writer"):
        config = config.replace(
            f'[llm.{role}]\nbase_url = ""\nmodel = ""', f'[llm.{role}]\nbase_url = "{endpoint}"\nmodel = "m"'
        )
    (kb / "loracle.toml").write_text(config, encoding="utf-8")
