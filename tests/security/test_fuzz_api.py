"""The API fuzzed from its own OpenAPI schema (schemathesis), over real HTTP, on the tiny model: no 5xx,
no server error inside a stream, no dropped connection, OpenAI error bodies, nothing from outside the
knowledge base and no server path in any response. A bounded, derandomized run (the same requests every
time); benchmarks/serve_fuzz.py runs thousands."""

from __future__ import annotations

from loracle.kb import KBPaths
from loracle.model.loader import LoadedModel
from loracle.serve.app import create_app
from loracle.serve.launch import background_server
from tests.security.fuzzing import fuzz
from tests.security.kb import ADAPTERS, PAGES, SECRET

EXAMPLES = 6  # per operation and mode: ~150 requests, ~15 s


def known_values(lm: LoadedModel) -> dict[str, list[str]]:
    """Real model names, adapter ids and page ids, put into some generated requests."""
    return {"model": [lm.name, *ADAPTERS, f"{lm.name}:{ADAPTERS[1]}"], "id": list(ADAPTERS), "page_id": list(PAGES)}


def forbidden(kb: KBPaths) -> list[str]:
    """What no response may hold: the secret beside the knowledge base, the server's paths to it."""
    return [SECRET, str(kb.root), str(kb.root.resolve())]


def test_fuzzed_requests_get_no_server_error(tiny_lm: LoadedModel, kb: KBPaths, one_thread: None) -> None:
    with background_server(create_app(tiny_lm, kb, token="")) as url:
        report = fuzz(url, examples=EXAMPLES, known=known_values(tiny_lm), forbidden=forbidden(kb))
    assert report.requests >= 100
    assert report.statuses[200] >= 30  # the real values got requests past validation into the model
    assert report.failures == []
