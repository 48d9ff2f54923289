"""The official `openai` client against a running server (uvicorn in a thread) around the tiny model."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import httpx
import jsonschema
import numpy as np
import openai
import pytest
from pydantic import BaseModel, Field

from loracle.model import GenerationConfig, apply_adapters, stream_chat
from loracle.model.loader import LoadedModel, model_fingerprint
from loracle.search.embedder import default_embedder
from loracle.serve.app import create_app
from loracle.serve.embeddings import EMBEDDING_MODEL
from loracle.serve.launch import background_server
from tests.conftest import build_tiny_model, build_tiny_tokenizer
from tests.unit.test_adapters import make_adapter

pytestmark = pytest.mark.e2e
QUESTION = [{"role": "user", "content": "Who founded the observatory?"}]
TOKEN = "s3cret-token"


def fresh_lm() -> LoadedModel:
    """The tiny model; seed 3 with the adapters below gives replies that differ visibly (most seeds only repeat \\n)."""
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer), seed=3)
    return LoadedModel(model, tokenizer, "tiny", "memory", model_fingerprint(model))


def direct_reply(folders: list[Path], weights: list[float] | None = None, max_tokens: int = 12) -> str:
    """What the same adapters give when applied alone to a fresh copy of the model (greedy)."""
    lm = apply_adapters(fresh_lm(), folders, weights)
    return stream_chat(lm, QUESTION, GenerationConfig(max_new_tokens=max_tokens)).text()


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kb")
    lm = fresh_lm()
    make_adapter(lm, root / "adapters" / "alpha", seed=2, targets=("q_proj", "v_proj"))
    make_adapter(lm, root / "adapters" / "beta-v2", seed=1)
    (root / "wiki").mkdir()
    return root


@pytest.fixture(scope="module")
def server(kb: Path) -> Iterator[str]:
    with background_server(create_app(fresh_lm(), kb, token=TOKEN, max_new_tokens=12)) as url:
        yield url


@pytest.fixture
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=TOKEN, max_retries=0)


def ask(client: openai.OpenAI, model: str, **extra) -> str:
    reply = client.chat.completions.create(model=model, messages=QUESTION, temperature=0, max_tokens=12, **extra)
    return reply.choices[0].message.content or ""


def test_chat_matches_direct_generation(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="tiny", messages=QUESTION, temperature=0, max_tokens=12)
    assert reply.object == "chat.completion"
    assert reply.choices[0].finish_reason in {"stop", "length"}
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    assert reply.choices[0].message.content == direct_reply([])


def test_streaming_gives_the_same_text(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny",
        messages=QUESTION,
        temperature=0,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ask(client, "tiny")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in {"stop", "length"}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_adapter_selection_by_model_name(client: openai.OpenAI, kb: Path) -> None:
    expected = direct_reply([kb / "adapters" / "alpha"])
    assert expected != direct_reply([])
    assert ask(client, "alpha") == expected
    assert ask(client, "tiny:alpha") == expected
    assert ask(client, "tiny") == direct_reply([])  # the adapter is off again for the next request


def test_stacked_adapters_with_weights(client: openai.OpenAI, kb: Path) -> None:
    folders = [kb / "adapters" / "alpha", kb / "adapters" / "beta-v2"]
    expected = direct_reply(folders, [1.0, 0.5])
    assert expected != direct_reply(folders[:1])
    reply = ask(client, "alpha", extra_body={"adapters": [{"id": "beta-v2", "weight": 0.5}]})
    assert reply == expected


def test_text_completion_stream(client: openai.OpenAI) -> None:
    whole = client.completions.create(model="tiny", prompt="The Kestrel Valley", temperature=0, max_tokens=8)
    pieces = client.completions.create(
        model="tiny", prompt="The Kestrel Valley", temperature=0, max_tokens=8, stream=True
    )
    assert "".join(p.choices[0].text for p in pieces) == whole.choices[0].text
    assert whole.choices[0].finish_reason == "length"


def test_vllm_and_llama_cpp_sampling_fields_through_the_openai_client(client: openai.OpenAI) -> None:
    def sampled(**extra_body: float) -> str:
        reply = client.chat.completions.create(
            model="tiny", messages=QUESTION, temperature=1.5, seed=7, max_tokens=12, extra_body=extra_body
        )
        return reply.choices[0].message.content or ""

    greedy = direct_reply([])
    assert sampled(top_k=1) == greedy and sampled(min_p=1.0) == greedy  # each leaves only the top token
    assert sampled(top_k=-1) == sampled()  # vLLM's "no limit"
    penalised = ask(client, "tiny", extra_body={"repetition_penalty": 3.0})
    assert penalised and penalised != greedy


@pytest.mark.parametrize(
    ("extra", "param", "says"),
    [
        ({"n": 2}, "n", "loracle returns one (n=1)"),
        ({"top_logprobs": 2}, "top_logprobs", "needs logprobs set to true"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "less than or equal to 20"),
        ({"extra_body": {"top_k": -2}}, "top_k", "greater than or equal to -1"),
        ({"extra_body": {"min_p": 1.5}}, "min_p", "less than or equal to 1"),
        ({"extra_body": {"repetition_penalty": 0}}, "repetition_penalty", "greater than 0"),
    ],
)
def test_what_loracle_cannot_do_is_a_400_naming_the_field(
    client: openai.OpenAI, extra: dict, param: str, says: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, "tiny", **extra)
    error = caught.value.body
    assert error["param"] == param or error["message"].startswith(param), error
    assert says in error["message"] and "\n" not in error["message"]


#: bounded everywhere, so that even a random model's reply ends by itself; length-bounded strings included,
#: which xgrammar's own rule would let hold raw control characters (not JSON)
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 2, "maxLength": 8},
        "role": {"enum": ["founder", "keeper"]},
        "year": {"type": "integer", "minimum": 1800, "maximum": 1999},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 2},
        "verified": {"type": "boolean"},
    },
    "required": ["name", "role", "year", "tags", "verified"],
    "additionalProperties": False,
}
AS_PERSON = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}


def _chat_text(client: openai.OpenAI, stream: bool, **request) -> tuple[str, str | None]:
    """The reply's text and finish reason, whole or put together from a stream."""
    if not stream:
        choice = client.chat.completions.create(model="tiny", messages=QUESTION, **request).choices[0]
        return choice.message.content or "", choice.finish_reason
    chunks = [c for c in client.chat.completions.create(model="tiny", messages=QUESTION, stream=True, **request)]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, [c.choices[0].finish_reason for c in chunks if c.choices][-1]


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_replies_validate_even_from_a_random_model(client: openai.OpenAI, stream: bool) -> None:
    samplings = [{"temperature": 0}] + [{"temperature": 1.5, "seed": seed} for seed in range(6)]
    for sampling in samplings:
        text, finish = _chat_text(client, stream, response_format=AS_PERSON, max_tokens=200, **sampling)
        assert finish == "stop", (sampling, text)  # ended by itself: only a whole document may end
        jsonschema.validate(json.loads(text), PERSON)
    legacy = client.completions.create(
        model="tiny", prompt="The observatory", max_tokens=200, temperature=0, extra_body={"response_format": AS_PERSON}
    )
    jsonschema.validate(json.loads(legacy.choices[0].text), PERSON)


@pytest.mark.parametrize("stream", [False, True])
def test_json_mode_gives_an_object_where_plain_text_is_not_json(client: openai.OpenAI, stream: bool) -> None:
    text, finish = _chat_text(client, stream, response_format={"type": "json_object"}, max_tokens=50, temperature=0)
    assert finish == "stop" and isinstance(json.loads(text), dict), text
    plain = ask(client, "tiny", response_format={"type": "text"})
    assert plain == direct_reply([])  # type text is no constraint at all
    with pytest.raises(ValueError):
        json.loads(plain)


def test_the_clients_own_parse_helper_gets_its_pydantic_model(client: openai.OpenAI) -> None:
    class Finding(BaseModel):
        kind: Literal["fact", "rule"]
        year: int = Field(ge=1800, le=1999)
        ok: bool

    for seed in range(3):
        reply = client.chat.completions.parse(
            model="tiny", messages=QUESTION, response_format=Finding, temperature=1.5, seed=seed, max_tokens=100
        )
        assert isinstance(reply.choices[0].message.parsed, Finding)


@pytest.mark.parametrize(
    ("response_format", "says"),
    [
        ({"type": "xml"}, "response_format.type: Input should be 'text', 'json_object' or 'json_schema'"),
        ({"type": "json_schema"}, "response_format: Value error, type json_schema needs a json_schema field"),
        ({"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}, "response_format.json_schema.name"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": "{}"}}, "valid dictionary"),
        ({"type": "json_object", "json_schema": {"name": "x"}}, "json_schema is for type json_schema"),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objectx"}}},
            'Unsupported type "objectx"',
        ),
        ({"type": "json_object", "schema": {"type": "string", "pattern": "(("}}, "Regex parsing error"),
        ({"type": "json_object", "schema": {"$ref": "#/$defs/missing"}}, "missing"),
        ({"type": "json_object", "schema": {"type": "integer", "minimum": 5, "maximum": 2}}, "minimum greater"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_a_bad_response_format_is_a_400_naming_the_problem(
    client: openai.OpenAI, response_format: dict, says: str, stream: bool
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _chat_text(client, stream, response_format=response_format, max_tokens=5)
    message = caught.value.body["message"]
    assert message.startswith("response_format") and says in message and "\n" not in message, message
    assert caught.value.body["param"].startswith("response_format")


def test_logprobs_whole_and_streamed_in_the_openai_shapes(client: openai.OpenAI) -> None:
    chat = dict(model="tiny", messages=QUESTION, temperature=0, max_tokens=12, logprobs=True, top_logprobs=3)
    reply = client.chat.completions.create(**chat)
    content = reply.choices[0].logprobs.content
    assert "".join(t.token for t in content) == reply.choices[0].message.content == direct_reply([])
    assert len(content) == reply.usage.completion_tokens - (reply.choices[0].finish_reason == "stop")
    for token in content:
        assert token.logprob <= 0 and bytes(token.bytes).decode("utf-8", "replace") == token.token
        assert len(token.top_logprobs) == 3 and token.top_logprobs[0].token == token.token  # greedy: the top one
        assert token.top_logprobs[0].logprob == pytest.approx(token.logprob)
    streamed = [
        t
        for chunk in client.chat.completions.create(**chat, stream=True)
        if chunk.choices and chunk.choices[0].logprobs
        for t in chunk.choices[0].logprobs.content
    ]
    assert [(t.token, round(t.logprob, 4)) for t in streamed] == [(t.token, round(t.logprob, 4)) for t in content]
    assert (
        client.chat.completions.create(**{**chat, "logprobs": False, "top_logprobs": None}).choices[0].logprobs is None
    )
    # the legacy completions shape: parallel lists, offsets into the text, the top alternatives as a dict
    done = client.completions.create(model="tiny", prompt="The observatory", max_tokens=8, temperature=0, logprobs=2)
    legacy = done.choices[0].logprobs
    assert "".join(legacy.tokens) == done.choices[0].text and len(legacy.token_logprobs) == len(legacy.tokens)
    assert legacy.text_offset == [sum(len(t) for t in legacy.tokens[:i]) for i in range(len(legacy.tokens))]
    assert all(
        len(top) <= 2 and max(top.values()) >= lp
        for top, lp in zip(legacy.top_logprobs, legacy.token_logprobs, strict=True)
    )
    chunks = client.completions.create(
        model="tiny", prompt="The observatory", max_tokens=8, temperature=0, logprobs=2, stream=True
    )
    pieces = [c.choices[0].logprobs for c in chunks if c.choices and c.choices[0].logprobs]
    assert [t for p in pieces for t in p.tokens] == legacy.tokens
    assert [o for p in pieces for o in p.text_offset] == legacy.text_offset


def test_embeddings_are_search_s_own_vectors_through_the_openai_client(client: openai.OpenAI) -> None:
    texts = ["The Corra River powers the Varn station.", "Ilse Marrow founded the observatory."]
    listed = {m.id for m in client.models.list().data}
    assert EMBEDDING_MODEL in listed
    as_base64 = client.embeddings.create(model=EMBEDDING_MODEL, input=texts)  # the client asks for base64
    as_floats = client.embeddings.create(model=EMBEDDING_MODEL, input=texts, encoding_format="float")
    expected = default_embedder().encode(texts)
    for reply in (as_base64, as_floats):
        assert [d.index for d in reply.data] == [0, 1] and reply.usage.prompt_tokens > 10
        assert np.allclose(np.array([d.embedding for d in reply.data]), expected, atol=1e-6)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        client.embeddings.create(model=EMBEDDING_MODEL, input="x", dimensions=256)
    with pytest.raises(openai.BadRequestError, match="token ids are not taken"):
        client.embeddings.create(model=EMBEDDING_MODEL, input=[[1, 2, 3]])


def test_unknown_adapter_is_404_with_openai_error_body(client: openai.OpenAI, server: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        ask(client, "no-such-adapter")
    assert caught.value.status_code == 404
    body = httpx.post(
        f"{server}/v1/chat/completions",
        json={"model": "tiny", "messages": QUESTION, "adapters": [{"id": "missing"}]},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ).json()
    assert body["error"]["code"] == "model_not_found" and "missing" in body["error"]["message"]
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_bad_adapter_id_and_auth(client: openai.OpenAI, server: str) -> None:
    with pytest.raises(openai.BadRequestError, match="not a valid adapter id"):
        ask(client, "tiny:../../etc")
    anonymous = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.models.list()
    assert httpx.get(f"{server}/api/pages").status_code == 401
    assert httpx.get(f"{server}/health").status_code == 200


def test_models_list_and_new_adapters_appear_without_restart(client: openai.OpenAI, kb: Path) -> None:
    ids = {m.id: m for m in client.models.list().data}
    assert {"tiny", "alpha", "beta-v2"} <= set(ids)
    assert ids["alpha"].model_extra["parent"] == "tiny"
    shutil.copytree(kb / "adapters" / "alpha", kb / "adapters" / "gamma")
    assert "gamma" in {m.id for m in client.models.list().data}
    assert ask(client, "gamma") == ask(client, "alpha")


def test_load_and_unload(server: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    loaded = httpx.post(f"{server}/v1/adapters/load", json={"id": "beta-v2"}, headers=headers)
    assert loaded.status_code == 200 and "beta-v2" in loaded.json()["loaded_adapters"]
    unloaded = httpx.post(f"{server}/v1/adapters/unload", json={"id": "beta-v2"}, headers=headers)
    assert unloaded.status_code == 200 and "beta-v2" not in unloaded.json()["loaded_adapters"]
    again = httpx.post(f"{server}/v1/adapters/unload", json={"id": "beta-v2"}, headers=headers)
    assert again.status_code == 404
    assert httpx.post(f"{server}/v1/adapters/load", json={"id": "../x"}, headers=headers).status_code == 400


def test_eight_concurrent_clients_with_mixed_adapters(client: openai.OpenAI, kb: Path) -> None:
    """Requests take turns at the model step by step; each must still get exactly its own adapters' reply."""
    mixes = [("tiny", []), ("alpha", []), ("beta-v2", []), ("alpha", [{"id": "beta-v2", "weight": 0.5}])] * 2
    replies: list[str | None] = [None] * len(mixes)

    def run(index: int) -> None:
        model, extra = mixes[index]
        stream = client.chat.completions.create(
            model=model,
            messages=QUESTION,
            temperature=0,
            max_tokens=12,
            stream=True,
            extra_body={"adapters": extra},
        )
        replies[index] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(mixes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for (model, extra), reply in zip(mixes, replies, strict=True):
        folders = ([] if model == "tiny" else [kb / "adapters" / model]) + [kb / "adapters" / e["id"] for e in extra]
        weights = [1.0] * (model != "tiny") + [e["weight"] for e in extra]
        assert reply == direct_reply(folders, weights), (model, extra)


def test_a_client_that_goes_away_mid_stream_frees_its_turn(server: str, client: openai.OpenAI) -> None:
    body = {"model": "tiny", "messages": QUESTION, "max_tokens": 400, "stream": True}
    with httpx.stream(
        "POST", f"{server}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as response:
        assert next(response.iter_lines()).startswith("data: ")
    assert ask(client, "tiny") == direct_reply([])  # the server goes on answering others


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_a_whole_reply_stops_generating_when_its_client_gives_up(path: str) -> None:
    """The issue's repro: max_tokens 4096 without streaming, a client that gives up, a core busy for minutes.

    The model is made slow (20 ms a token, by a hook that also counts tokens) so the answer would take ~10 s.
    """
    import time

    from loracle.model.chat import stop_token_ids

    lm = fresh_lm()
    decoded = []

    def slow(*_) -> None:
        decoded.append(1)
        time.sleep(0.02)

    lm.model.model.embed_tokens.register_forward_hook(slow)
    never_stop = {str(t): -100 for t in stop_token_ids(lm.tokenizer)}
    body = {"model": "tiny", "max_tokens": 4096, "logit_bias": never_stop, "temperature": 0}
    body.update({"messages": QUESTION} if "chat" in path else {"prompt": "The Kestrel Valley"})
    app = create_app(lm, None, token="")
    scheduler = app.state.loracle.scheduler
    with background_server(app) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}{path}", json=body, timeout=0.5)
        deadline = time.monotonic() + 5
        while scheduler.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert scheduler.pending() == 0, f"still generating after the client left ({len(decoded)} tokens)"
        stopped_at = len(decoded)
        time.sleep(0.2)
        assert len(decoded) == stopped_at < 200  # out of the ~490 the answer would have taken


def test_serve_refuses_a_bad_or_busy_port_before_serving(tmp_path: Path) -> None:
    import socket

    from tests.e2e.cli import loracle

    (tmp_path / "loracle.toml").write_text("")
    result = loracle("serve", "--kb", tmp_path, "--port", "99999")
    assert result.returncode == 1 and "serving" not in result.stdout
    assert result.stderr.strip() == "error: --port 99999: not a port number (0 to 65535)"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = loracle("serve", "--kb", tmp_path, "--port", str(port))
    assert result.returncode == 1 and "serving" not in result.stdout
    assert result.stderr.strip() == f"error: 127.0.0.1:{port}: cannot listen there (Address already in use)"


@pytest.mark.integration
def test_an_openai_client_without_temperature_gets_coherent_text(embedded_lm: LoadedModel) -> None:
    """The issue: the openai client sends no temperature; sampled at 1.0 the embedded model answered
    "Il pays durque de fer..." for the capital of France in 2 of 3 tries."""
    question = [{"role": "user", "content": "What is the capital of France?"}]
    with background_server(create_app(embedded_lm, None, token="")) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        replies = [
            client.chat.completions.create(model="base", messages=question, max_tokens=16).choices[0].message.content
            for _ in range(3)
        ]
    assert all("Paris" in (reply or "") for reply in replies), replies
    assert len(set(replies)) == 1  # greedy: the same reply every time
