"""The writer LLM: JSON extraction and repair, the one retry, call counting, and the HTTP endpoint backend."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import BaseModel

from loracle.config import Config, EndpointConfig
from loracle.errors import LoracleError
from loracle.llm import LLM, Completion, EndpointBackend, LocalBackend, extract_json, make_llm, parse_answer
from loracle.llm.jsonfix import JSONNotFound
from tests.e2e.writer import send_json


class Facts(BaseModel):
    title: str
    entities: list[str] = []
    summary: str = ""


class ScriptedBackend:
    """Answers with canned replies in order and remembers the prompts (a test double)."""

    name = "scripted"

    def __init__(self, replies: Sequence[str]) -> None:
        self.replies = list(replies)
        self.prompts: list[list[dict]] = []

    def chat(self, messages, max_tokens, temperature, stop=None) -> Completion:
        self.prompts.append([dict(m) for m in messages])
        return Completion(self.replies.pop(0), prompt_tokens=10, completion_tokens=5)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('{"title": "A", "entities": ["x", "y"]}', {"title": "A", "entities": ["x", "y"]}),
        ('Sure! Here it is:\n```json\n{"title": "A"}\n```\nHope that helps.', {"title": "A"}),
        ('```\n{"title": "A",}\n```', {"title": "A"}),
        ('{"title": "A", "entities": ["x", "y",],}', {"title": "A", "entities": ["x", "y"]}),
        ("{'title': 'A', 'entities': ['x']}", {"title": "A", "entities": ["x"]}),
        ('{"title": "A", "entities": ["x", "y"', {"title": "A", "entities": ["x", "y"]}),
        ('The answer is {"title": "A"} and more words', {"title": "A"}),
        ('{"title": "He said \\"hi\\""}', {"title": 'He said "hi"'}),
    ],
)
def test_extract_json_repairs_common_breakage(answer: str, expected: dict) -> None:
    assert extract_json(answer) == expected


def test_extract_json_refuses_prose() -> None:
    with pytest.raises(JSONNotFound):
        extract_json("I cannot help with that.")


@pytest.mark.parametrize(
    ("answer", "entities", "title"),
    [
        ('{"Title": "A", "ENTITIES": "x, y"}', ["x", "y"], "A"),  # key case, a string where a list belongs
        ('{"title": ["A", "B"], "entities": ["x"]}', ["x"], "A B"),  # a list where a string belongs
        ('{"title": "A", "entities": [{"name": "x"}, "y"]}', ["x", "y"], "A"),  # objects where strings belong
        ('[{"title": "A", "entities": ["x"]}]', ["x"], "A"),  # the object wrapped in a list
        ('{"title": "A", "entities": null, "extra": 1}', [], "A"),  # null list, unknown key ignored
        ('{"title": "A"}', [], "A"),  # missing keys come from defaults
    ],
)
def test_parse_answer_fits_flat_schemas(answer: str, entities: list[str], title: str) -> None:
    facts = parse_answer(answer, Facts)
    assert facts.entities == entities
    assert facts.title == title
    assert facts.summary == ""


def test_bare_list_answers_a_single_list_field() -> None:
    class Names(BaseModel):
        names: list[str] = []

    assert parse_answer('["a", "b"]', Names).names == ["a", "b"]


def test_parse_answer_missing_required_key_is_an_error() -> None:
    with pytest.raises(ValueError, match="title"):
        parse_answer('{"entities": ["x"]}', Facts)


def test_complete_json_retries_once_showing_the_error() -> None:
    backend = ScriptedBackend(['{"entities": ["x"]}', '{"title": "Fixed", "entities": ["x"]}'])
    llm = LLM(backend)
    facts = llm.complete_json([{"role": "user", "content": "Extract."}], Facts)
    assert facts.title == "Fixed"
    assert llm.calls == 2 and llm.retries == 1
    assert llm.prompt_tokens == 20 and llm.completion_tokens == 10
    retry_prompt = backend.prompts[1]
    assert retry_prompt[-2] == {"role": "assistant", "content": '{"entities": ["x"]}'}
    assert "title" in retry_prompt[-1]["content"] and "not valid" in retry_prompt[-1]["content"]
    assert '"title": "..."' in backend.prompts[0][-1]["content"]  # the schema shape is shown up front


def test_complete_json_raises_after_second_failure() -> None:
    llm = LLM(ScriptedBackend(["no idea", "still no idea"]))
    with pytest.raises(LoracleError, match="not valid Facts JSON after one retry"):
        llm.complete_json([{"role": "user", "content": "Extract."}], Facts)
    assert llm.calls == 2


def test_local_backend_honours_a_stop_rule(tiny_lm) -> None:
    llm = LLM(LocalBackend(lm=tiny_lm))
    seen: list[str] = []
    llm.complete([{"role": "user", "content": "Who founded it?"}], max_tokens=20, stop=lambda t: bool(seen.append(t)))
    short = llm.complete([{"role": "user", "content": "Who founded it?"}], max_tokens=20, stop=lambda t: True)
    assert seen and short == seen[0].strip()  # stopped after the first piece


def test_backends_without_stop_rules_still_work() -> None:
    class OldBackend:
        name = "old"

        def chat(self, messages, max_tokens, temperature) -> Completion:
            return Completion('{"title": "A"}')

    assert LLM(OldBackend()).complete_json([{"role": "user", "content": "x"}], Facts).title == "A"


def test_usage_snapshots_subtract() -> None:
    llm = LLM(ScriptedBackend(["a", "b"]))
    llm.complete([{"role": "user", "content": "x"}])
    before = llm.usage()
    llm.complete([{"role": "user", "content": "y"}])
    assert (llm.usage() - before).calls == 1


def test_make_llm_picks_the_backend_per_role(tiny_lm) -> None:
    config = Config()
    config.llm.fast = EndpointConfig(base_url="http://127.0.0.1:9/v1", model="m")
    assert isinstance(make_llm(config, "fast").backend, EndpointBackend)
    writer = make_llm(config, "writer", lm=tiny_lm)
    assert isinstance(writer.backend, LocalBackend) and writer.backend.lm is tiny_lm
    with pytest.raises(LoracleError, match="role"):
        make_llm(config, "editor")  # type: ignore[arg-type]


def test_local_backend_generates_with_the_model(tiny_lm) -> None:
    llm = LLM(LocalBackend(lm=tiny_lm))
    text = llm.complete([{"role": "user", "content": "Who founded it?"}], max_tokens=5)
    assert isinstance(text, str)
    assert llm.calls == 1 and 0 < llm.completion_tokens <= 5 and llm.prompt_tokens > 5


# --- the endpoint backend against a real HTTP server speaking the OpenAI chat format ---


class _Handler(BaseHTTPRequestHandler):
    replies: list[tuple[int, dict]] = []  # noqa: RUF012
    requests: list[dict] = []  # noqa: RUF012

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        status, payload = type(self).replies.pop(0)
        send_json(self, status, payload)

    def log_message(self, *args) -> None:
        pass


def _chat_response(content: str) -> dict:
    return {
        "id": "x",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    }


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.replies, _Handler.requests = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_endpoint_backend_round_trip(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", "sekrit")
    config = Config()
    config.llm.writer = EndpointConfig(base_url=server + "/", model="qwen-small", api_key_env="TEST_LLM_KEY")
    _Handler.replies = [(200, _chat_response('```json\n{"title": "Observatory", "entities": ["Ilse Marrow",]}\n```'))]
    llm = make_llm(config, "writer")
    facts = llm.complete_json([{"role": "user", "content": "Extract."}], Facts)
    assert facts.title == "Observatory" and facts.entities == ["Ilse Marrow"]
    assert llm.calls == 1 and llm.prompt_tokens == 12 and llm.completion_tokens == 7
    sent = _Handler.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["auth"] == "Bearer sekrit"
    assert sent["body"]["model"] == "qwen-small" and sent["body"]["temperature"] == 0.0
    assert sent["body"]["messages"][0]["role"] == "user"


def test_endpoint_backend_errors_are_one_line(server: str) -> None:
    _Handler.replies = [(500, {"error": {"message": "model not found"}}), (200, {"unexpected": True})]
    llm = LLM(EndpointBackend(EndpointConfig(base_url=server, model="m", api_key_env="")))
    with pytest.raises(LoracleError, match="HTTP 500: model not found"):
        llm.complete([{"role": "user", "content": "hi"}])
    with pytest.raises(LoracleError, match="not an OpenAI chat completion"):
        llm.complete([{"role": "user", "content": "hi"}])


def test_endpoint_backend_unreachable_server() -> None:
    llm = LLM(EndpointBackend(EndpointConfig(base_url="http://127.0.0.1:9/v1", model="m"), timeout_s=2))
    with pytest.raises(LoracleError, match="cannot connect"):
        llm.complete([{"role": "user", "content": "hi"}])


def test_endpoint_needs_a_model_name() -> None:
    with pytest.raises(LoracleError, match="no model name"):
        EndpointBackend(EndpointConfig(base_url="http://127.0.0.1:9/v1"))
