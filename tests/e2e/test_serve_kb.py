"""Model "kb" through the official `openai` client: a running server (uvicorn in a thread) around the tiny model
and a tiny compiled knowledge base (tests/compiled_kb.py); each reply must be what the routed adapter gives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from loracle.model import GenerationConfig, apply_adapters, generate_chat, question_messages
from loracle.model.prefix import load_prefix_adapter
from loracle.serve.app import create_app
from loracle.serve.launch import background_server
from tests.compiled_kb import CORRA, KESTREL, seeded_lm, write_compiled_kb, write_memory_kb

pytestmark = pytest.mark.e2e
TOKEN = "s3cret-token"
FOUNDER = "Who founded the Kestrel Valley Observatory?"
ELSEWHERE = "What is the capital of France?"


def direct(folders: list[Path], question: str) -> str:
    """The greedy reply with these adapters applied by plain PEFT to a fresh copy of the model."""
    lm = apply_adapters(seeded_lm(), folders) if folders else seeded_lm()
    return generate_chat(lm, question_messages(question), GenerationConfig(max_new_tokens=8))


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    kb = write_compiled_kb(tmp_path_factory.mktemp("kb") / "kb", seeded_lm())
    page = kb / "wiki" / f"{CORRA.id}.md"
    page.write_text(page.read_text() + "It was rebuilt in 2001.\n", encoding="utf-8")  # corra-river is stale
    return kb


@pytest.fixture(scope="module")
def client(kb: Path) -> Iterator[openai.OpenAI]:
    with background_server(create_app(seeded_lm(), kb, token=TOKEN)) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=0)


def ask(client: openai.OpenAI, question: str, **extra):
    messages = [{"role": "user", "content": question}]
    return client.chat.completions.create(model="kb", messages=messages, temperature=0, max_tokens=8, **extra)


def test_kb_is_listed_beside_the_base_model(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list().data}
    assert models["kb"].model_extra["parent"] == "tiny"


def test_kb_answers_from_the_routed_adapter_and_says_which(client: openai.OpenAI, kb: Path) -> None:
    reply = ask(client, FOUNDER)
    expected = direct([kb / "adapters" / KESTREL.id], FOUNDER)
    assert expected != direct([], FOUNDER)
    assert reply.choices[0].message.content.strip() == expected
    answered = reply.model_extra["loracle"]
    assert [a["id"] for a in answered["adapters"]] == [KESTREL.id] and answered["adapters"][0]["weight"] == 1.0
    assert answered["documents"] == [
        {"id": KESTREL.id, "title": KESTREL.title, "adapter": KESTREL.id, "source": "wiki",
         "page": f"{KESTREL.id}.md", "path": f"wiki/{KESTREL.id}.md"}
    ]  # fmt: skip
    assert answered["warnings"] == []
    about_nothing = ask(client, ELSEWHERE)
    assert about_nothing.choices[0].message.content.strip() == direct([], ELSEWHERE)
    assert about_nothing.model_extra["loracle"]["documents"] == []


def test_a_kb_stream_carries_what_answered_in_its_first_chunk(client: openai.OpenAI, kb: Path) -> None:
    chunks = list(ask(client, "What powers the Varn station?", stream=True))
    answered = chunks[0].model_extra["loracle"]
    assert [d["id"] for d in answered["documents"]] == [CORRA.id]
    assert answered["warnings"] == [
        "adapter corra-river is stale: wiki/corra-river.md changed since it was compiled (run `loracle compile`)"
    ]
    assert all("loracle" not in (c.model_extra or {}) for c in chunks[1:])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == direct([kb / "adapters" / CORRA.id], "What powers the Varn station?")


def test_kb_refuses_what_it_cannot_do(client: openai.OpenAI, tmp_path: Path) -> None:
    with pytest.raises(openai.BadRequestError, match="chooses its own adapters"):
        ask(client, FOUNDER, extra_body={"adapters": [{"id": KESTREL.id}]})
    with pytest.raises(openai.BadRequestError, match="chat completions"):
        client.completions.create(model="kb", prompt="Who founded it?", max_tokens=4)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "loracle.toml").write_text("")
    with background_server(create_app(seeded_lm(), empty, token="")) as url:
        body = httpx.post(
            f"{url}/v1/chat/completions", json={"model": "kb", "messages": [{"role": "user", "content": FOUNDER}]}
        ).json()
    message = body["error"]["message"]
    assert "no compiled adapters" in message and "loracle compile" in message and str(tmp_path) not in message


def test_a_kb_of_prefix_adapters_answers_as_its_python_api_does(tmp_path: Path) -> None:
    """The memory learner's prefix adapters, over HTTP: whole and streamed replies are the routed answer."""
    kb = write_memory_kb(tmp_path / "kb", seeded_lm())
    expected = kb.ask(FOUNDER, max_new_tokens=8).text
    kb.close()
    assert expected != direct([], FOUNDER)
    with background_server(create_app(seeded_lm(), tmp_path / "kb", token=TOKEN)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=0)
        reply = ask(client, FOUNDER)
        assert reply.choices[0].message.content.strip() == expected
        assert [d["id"] for d in reply.model_extra["loracle"]["documents"]] == [KESTREL.id]
        chunks = list(ask(client, FOUNDER, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip() == expected
        assert ask(client, ELSEWHERE).choices[0].message.content.strip() == direct([], ELSEWHERE)
        # the adapter by name, as any adapter of the catalog: its cache before the prompt
        lm = seeded_lm()
        cache = load_prefix_adapter(lm, tmp_path / "kb" / "adapters" / KESTREL.id)
        by_name = client.chat.completions.create(
            model=KESTREL.id, messages=[{"role": "user", "content": FOUNDER}], temperature=0, max_tokens=8
        )
        expected = generate_chat(lm, question_messages(FOUNDER), GenerationConfig(max_new_tokens=8), cache)
        assert by_name.choices[0].message.content.strip() == expected.strip()
        loaded = httpx.post(
            f"{url}/v1/adapters/load", json={"id": KESTREL.id}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert loaded.status_code == 200 and loaded.json()["loaded"] is True
