"""The server's parts on the tiny model: adapter pool, stop strings, rendering, ids, security, exposure."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from loracle.adapters.pool import AdapterPool, normalise_spec
from loracle.config import ServeConfig
from loracle.errors import AdapterError, LoracleError
from loracle.kb import KBPaths
from loracle.model import GenerationConfig, apply_adapters, encode_chat
from loracle.model.loader import LoadedModel, model_fingerprint
from loracle.serve.app import create_app
from loracle.serve.catalog import AdapterCatalog, InvalidAdapterIdError, UnknownAdapterError
from loracle.serve.generation import Finish, _partial_stop_length, generation_steps
from loracle.serve.inventory import AdapterInventory
from loracle.serve.launch import check_exposure
from loracle.serve.render import render_markdown
from loracle.serve.wiki_view import WikiView
from tests.conftest import build_tiny_model
from tests.unit.test_adapters import make_adapter

#: the server without a token answers only requests for a loopback Host (TestClient's default is "testserver")
LOCAL = "http://127.0.0.1"


def fresh(lm: LoadedModel) -> LoadedModel:
    model = build_tiny_model(len(lm.tokenizer))
    return LoadedModel(model, lm.tokenizer, "tiny", "memory", model_fingerprint(model))


def logits(lm: LoadedModel) -> torch.Tensor:
    with torch.no_grad():
        return lm.model(torch.tensor([[1, 2, 3, 4]])).logits


@pytest.fixture
def adapters(tiny_lm: LoadedModel, tmp_path: Path) -> Path:
    root = tmp_path / "adapters"
    make_adapter(tiny_lm, root / "a", seed=1)
    make_adapter(tiny_lm, root / "b", seed=2, targets=("q_proj", "v_proj"))
    return root


def test_pool_switches_to_exactly_the_requested_adapters(tiny_lm: LoadedModel, adapters: Path) -> None:
    base = logits(tiny_lm)
    expected_ab = logits(apply_adapters(fresh(tiny_lm), [adapters / "a", adapters / "b"], [1.0, 0.5]))
    expected_a = logits(apply_adapters(fresh(tiny_lm), [adapters / "a"]))
    pool = AdapterPool(tiny_lm, AdapterCatalog(adapters).folder_for)
    for adapter_id in ("a", "b"):
        pool.ensure_loaded(adapter_id)
    for _ in range(2):  # switching back and forth never accumulates scaling
        pool.activate((("a", 1.0), ("b", 0.5)))
        assert torch.allclose(logits(tiny_lm), expected_ab, atol=1e-5)
        pool.activate((("a", 1.0),))
        assert torch.allclose(logits(tiny_lm), expected_a, atol=1e-5)
        pool.activate(())
        assert torch.allclose(logits(tiny_lm), base, atol=1e-6)
    pool.close()
    assert torch.allclose(logits(tiny_lm), base, atol=1e-6)
    assert not any("lora" in name for name, _ in tiny_lm.model.named_modules())


def test_pool_is_lru_bounded_and_keeps_pinned_adapters(tiny_lm: LoadedModel, adapters: Path) -> None:
    pool = AdapterPool(tiny_lm, AdapterCatalog(adapters).folder_for, max_loaded=1)
    pool.ensure_loaded("a")
    pool.ensure_loaded("b")
    assert pool.loaded() == ["b"]
    with pool.pinned((("b", 1.0),)):
        with pytest.raises(AdapterError, match="in use"):
            pool.unload("b")
        pool.ensure_loaded("a")  # b is in use: the bound gives way rather than fail a request
        assert sorted(pool.loaded()) == ["a", "b"]
    assert pool.unload("b") and pool.loaded() == ["a"]
    assert not pool.unload("b")


def test_pool_reloads_an_adapter_recompiled_on_disk(tiny_lm: LoadedModel, adapters: Path, tmp_path: Path) -> None:
    pool = AdapterPool(tiny_lm, AdapterCatalog(adapters).folder_for)
    pool.ensure_loaded("a")
    pool.activate((("a", 1.0),))
    before = logits(tiny_lm)
    replacement = make_adapter(tiny_lm, tmp_path / "new", seed=7)
    shutil.rmtree(adapters / "a")
    shutil.copytree(replacement, adapters / "a")
    os.utime(adapters / "a" / "adapter_model.safetensors", ns=(1, 1))
    pool.ensure_loaded("a")
    pool.activate((("a", 1.0),))
    assert torch.allclose(logits(tiny_lm), logits(apply_adapters(fresh(tiny_lm), [adapters / "a"])), atol=1e-5)
    assert not torch.allclose(logits(tiny_lm), before)


def test_catalog_validates_ids(adapters: Path) -> None:
    catalog = AdapterCatalog(adapters)
    assert catalog.ids() == ["a", "b"]
    for bad in ("../a", "a/b", "", "..", "A", "a b", "/etc/passwd", "a\x00"):
        with pytest.raises(InvalidAdapterIdError):
            catalog.folder_for(bad)
    with pytest.raises(UnknownAdapterError):
        catalog.folder_for("missing")
    (adapters / ".c.staging-1").mkdir()
    assert catalog.ids() == ["a", "b"]


def test_spec_merges_repeated_ids() -> None:
    assert normalise_spec([("a", 1.0), ("b", 0.5), ("a", 0.5)]) == (("a", 1.5), ("b", 0.5))


def test_stop_strings_cut_the_reply(tiny_lm: LoadedModel) -> None:
    prompt = encode_chat(tiny_lm.tokenizer, [{"role": "user", "content": "Paris"}])
    config = GenerationConfig(max_new_tokens=10)
    full = [p for p in generation_steps(tiny_lm, prompt, config) if isinstance(p, str)]
    text = "".join(full)
    assert len(text) >= 3
    stop = text[1:3]
    steps = list(generation_steps(tiny_lm, prompt, config, [stop]))
    assert "".join(p for p in steps if isinstance(p, str)) == text[: text.find(stop)]
    finish = steps[-1]
    assert isinstance(finish, Finish) and finish.reason == "stop"
    assert _partial_stop_length("abc</s", ["</stop>"]) == 3
    assert _partial_stop_length("abc", ["xyz"]) == 0


def test_markdown_is_rendered_safely_with_wikilinks() -> None:
    pages = {"paris": "Paris"}
    html = render_markdown(
        "See [[Paris]], [[paris|the city]], [[Nowhere]] and <script>alert(1)</script> [x](javascript:alert(1))",
        lambda target: target.lower() if target.lower() in pages else None,
    )
    assert '<a class="wikilink" data-page="paris" href="#/page/paris">Paris</a>' in html
    assert ">the city</a>" in html
    assert 'class="wikilink missing"' in html and "Nowhere" in html
    assert "<script>" not in html and 'href="javascript' not in html


def test_wiki_view_backlinks_and_graph(tmp_path: Path) -> None:
    (tmp_path / "concepts").mkdir()
    (tmp_path / "a.md").write_text("---\ntitle: A\n---\n# A\n\nSee [[b|B]] and `[[not-a-link]]`.")
    (tmp_path / "concepts" / "b.md").write_text("---\ntitle: B\n---\nBack to [[a]] and [[missing]].")
    (tmp_path / "broken.md").write_bytes(b"\xff\xfe")
    wiki = WikiView(tmp_path)
    assert {p.rel for p in wiki.pages()} >= {"a.md", "concepts/b.md"}
    assert wiki.backlinks("a.md") == [{"id": "concepts/b.md", "title": "B"}]
    edges = wiki.link_graph()["edges"]
    assert {"source": "a.md", "target": "concepts/b.md"} in edges and len(edges) == 2
    assert wiki.page("../a.md") is None and wiki.page("/etc/passwd") is None
    assert "title:" not in wiki.body(wiki.page("a.md"))
    (tmp_path / "c.md").write_text("# C\n\n[[a]]")  # a new page shows up without a restart
    assert wiki.page("c.md") is not None


def test_adapter_inventory_marks_stale_adapters(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    from loracle.pipeline import wiki_source

    kb = KBPaths(tmp_path)
    kb.wiki.mkdir()
    (kb.wiki / "a.md").write_text("# A\n\nOne.")
    (kb.wiki / "b.md").write_text("# B\n\nTwo.")
    for name in ("a", "b", "gone"):
        folder = make_adapter(tiny_lm, kb.adapters / name, seed=1)
        recorded = wiki_source(kb.root).read(kb.wiki / "a.md").hash if name == "a" else "0" * 64
        manifest = {"id": name, "document_id": name, "source": "wiki", "content_hash": recorded, "inputs": [name]}
        (folder / "manifest.json").write_text(json.dumps(manifest))
    rows = {r["id"]: r for r in AdapterInventory(kb, AdapterCatalog(kb.adapters)).listing({"a"})[0]}
    assert rows["a"]["stale"] is False and rows["a"]["loaded"] and rows["a"]["page"] == "a.md"
    assert rows["b"]["stale"] is True and rows["gone"]["stale"] is True and rows["gone"]["page"] is None
    assert rows["a"]["size_bytes"] > 0


def test_lint_and_pages_api(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    (tmp_path / "wiki").mkdir()
    (tmp_path / "wiki" / "a.md").write_text("# A\n\nSee [[nowhere]].")
    with TestClient(create_app(tiny_lm, tmp_path, token=""), base_url=LOCAL) as client:
        findings = client.get("/api/lint").json()["findings"]
        assert any(f["page"] == "a.md" and "nowhere" in f["message"] for f in findings)
        page = client.get("/api/pages/a.md").json()
        assert 'class="wikilink missing"' in page["html"] and page["backlinks"] == []
        assert client.get("/api/pages/..%2F..%2Floracle.toml").status_code == 404


def test_security_token_size_limit_and_cors(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    config = ServeConfig(max_request_bytes=2000)
    with TestClient(create_app(tiny_lm, tmp_path, config=config, token="t0k")) as client:
        denied = client.get("/v1/models")
        assert denied.status_code == 401 and denied.json()["error"]["type"] == "authentication_error"
        assert client.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.get("/v1/models", headers={"Authorization": "Bearer t0k"}).status_code == 200
        assert client.get("/").status_code == 200 and client.get("/static/app.js").status_code == 200
        big = {"model": "tiny", "messages": [{"role": "user", "content": "x" * 5000}]}
        response = client.post("/v1/chat/completions", json=big, headers={"Authorization": "Bearer t0k"})
        assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"

        def chunked():  # no Content-Length: the limit applies while reading
            yield b'{"model": "tiny", "messages": [{"role": "user", "content": "'
            yield b"x" * 5000
            yield b'"}]}'

        response = client.post("/v1/completions", content=chunked(), headers={"Authorization": "Bearer t0k"})
        assert response.status_code == 413
        assert "access-control-allow-origin" not in client.get("/health", headers={"Origin": "http://x"}).headers
    app = create_app(fresh(tiny_lm), tmp_path, config=ServeConfig(cors_origins=["http://x"]), token="")
    with TestClient(app, base_url=LOCAL) as c:
        assert c.get("/health", headers={"Origin": "http://x"}).headers["access-control-allow-origin"] == "http://x"


def test_bad_requests_get_openai_error_bodies(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    with TestClient(create_app(tiny_lm, tmp_path, token=""), base_url=LOCAL) as client:
        cases = [
            {"model": "tiny", "messages": []},
            {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "n": 2},
            {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "logit_bias": {"x": 1}},
            {"model": "tiny", "messages": [{"role": "wizard", "content": "hi"}]},
            {"model": "other:a", "messages": [{"role": "user", "content": "hi"}]},
        ]
        for body, status in zip(cases, (400, 400, 400, 400, 404), strict=True):
            response = client.post("/v1/chat/completions", json=body)
            assert response.status_code == status, body
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        assert client.post("/v1/chat/completions", content=b"{not json").status_code == 400
        assert client.get("/api/pages/nope").status_code == 404
        assert client.get("/api/eval").json()["error"]["code"] == "no_eval"


def test_refuses_to_listen_beyond_loopback_without_a_token() -> None:
    check_exposure("127.0.0.1", "")
    check_exposure("::1", "")
    check_exposure("0.0.0.0", "secret")
    with pytest.raises(LoracleError, match="refusing"):
        check_exposure("0.0.0.0", "")


def chat_text(client: TestClient, **fields) -> str:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Who founded it?"}], "max_tokens": 12, **fields}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def test_a_request_without_temperature_is_greedy(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    with TestClient(create_app(tiny_lm, tmp_path, token=""), base_url=LOCAL) as client:
        greedy = chat_text(client, temperature=0)
        assert chat_text(client, seed=1) == greedy
        assert chat_text(client, seed=1, top_p=0.5) == greedy  # top_p alone does not turn sampling on
        assert chat_text(client, seed=1, temperature=1.0) != greedy  # what OpenAI's default of 1.0 gave
        assert chat_text(client, seed=1, temperature=1e-133) == greedy  # too small for float32: was NaN, a 500
        assert chat_text(client, seed=1, temperature=1, top_p=5e-324) == greedy  # kept no token: was a 500


def test_the_models_own_sampling_config_is_the_default(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    from loracle.serve.generation import Sampling, model_sampling

    assert model_sampling(tiny_lm) == Sampling(0.0, 1.0)
    tiny_lm.model.generation_config.update(do_sample=True, temperature=0.7, top_p=0.9)
    assert model_sampling(tiny_lm) == Sampling(0.7, 0.9)
    with TestClient(create_app(tiny_lm, tmp_path, token=""), base_url=LOCAL) as client:
        assert chat_text(client, seed=5) == chat_text(client, seed=5, temperature=0.7, top_p=0.9)
        assert chat_text(client, seed=5) != chat_text(client, temperature=0)


def test_out_of_range_seeds_and_lone_surrogates_get_one_line_400s(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    make_adapter(tiny_lm, tmp_path / "adapters" / "a", seed=1)
    chat = '{"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]'
    bodies = {
        "/v1/chat/completions": [
            chat + ', "seed": 1180591620717411303424}',  # 2**70
            chat + ', "seed": -1180591620717411303424}',
            '{"model": "tiny", "messages": [{"role": "user", "content": "\\ud800"}]}',
            '{"model": "tiny", "messages": [{"role": "user", "content": "\\ud800"}], "stream": true}',
            '{"model": "tiny", "messages": [{"role": "user", "content": [{"type": "text", "text": "a\\udfff"}]}]}',
            chat + ', "stop": ["\\ud800"]}',
            chat + ', "user": "\\udc00"}',  # a field loracle ignores
            chat + ', "logit_bias": {"\\ud800": 1}}',
            '{"model": "\\ud800", "messages": [{"role": "user", "content": "hi"}]}',
            chat + ', "adapters": [{"id": "a\\ud800"}]}',
        ],
        "/v1/completions": ['{"model": "tiny", "prompt": "\\ud800"}', '{"model": "tiny", "prompt": ["x\\ud800"]}'],
        "/v1/adapters/load": ['{"id": "\\ud800"}'],
        "/api/ask": ['{"question": "\\ud800?"}'],
        "/api/query": ['{"question": "\\ud800?"}'],
    }
    headers = {"Content-Type": "application/json"}
    with TestClient(create_app(tiny_lm, tmp_path, token=""), base_url=LOCAL) as client:
        for path, cases in bodies.items():
            for body in cases:
                response = client.post(path, content=body.encode(), headers=headers)
                assert response.status_code == 400, (path, body, response.text)
                message = response.json()["error"]["message"]
                assert "\n" not in message and ("seed" in message or "surrogate" in message), message
        largest = (chat + ', "seed": 18446744073709551615}').encode()
        ok = client.post("/v1/chat/completions", content=largest, headers=headers)
        assert ok.status_code == 200  # the largest seed torch takes


def test_unusable_adapter_folders_are_listed_apart(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    adapters = tmp_path / "adapters"
    make_adapter(tiny_lm, adapters / "good", seed=1)
    make_adapter(tiny_lm, adapters / "Bad Name", seed=1)
    make_adapter(tiny_lm, adapters / "no-weights", seed=1)
    (adapters / "no-weights" / "adapter_model.safetensors").unlink()
    os.mkdir(os.fsencode(adapters) + b"/bytes-\xff")  # a name that is not UTF-8
    (adapters / ".staging-1").mkdir()  # hidden: a compile in progress, not listed at all
    (adapters / "README").write_text("not a folder")
    with TestClient(create_app(tiny_lm, tmp_path, token=""), base_url=LOCAL) as client:
        listing = client.get("/api/adapters")
        assert listing.status_code == 200
        assert [a["id"] for a in listing.json()["adapters"]] == ["good"]
        unusable = {u["folder"]: u["problem"] for u in listing.json()["unusable"]}
        assert set(unusable) == {"Bad Name", "no-weights", "bytes-\ufffd"}
        assert "not a valid adapter id" in unusable["Bad Name"] and "no adapter_model" in unusable["no-weights"]
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["tiny", "kb", "all-MiniLM-L6-v2", "good"]
        chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        assert client.post("/v1/chat/completions", json={**chat, "model": "good"}).status_code == 200
        assert client.post("/v1/chat/completions", json={**chat, "model": "Bad Name"}).status_code == 400
        assert client.post("/v1/chat/completions", json={**chat, "model": "no-weights"}).status_code == 404


def test_error_messages_name_no_server_paths(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    from loracle.eval.report import LATEST_JSON, latest_dir
    from loracle.serve.errors import public_message

    root = tmp_path / "my-kb"
    folder = make_adapter(tiny_lm, root / "adapters" / "broken", seed=1)
    (folder / "adapter_model.safetensors").write_bytes(b"not safetensors")
    (folder / "manifest.json").write_text("{")
    latest_dir(KBPaths(root).state).mkdir(parents=True)
    (latest_dir(KBPaths(root).state) / LATEST_JSON).write_text("{")
    chat = {"model": "broken", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with TestClient(create_app(tiny_lm, root, token=""), base_url=LOCAL) as client:
        responses = [
            client.post("/v1/adapters/load", json={"id": "broken"}),
            client.post("/v1/chat/completions", json=chat),
            client.post("/v1/chat/completions", json={**chat, "stream": True}),
            client.get("/api/eval"),
            client.get("/api/adapters"),
            client.get("/api/info"),
        ]
        for response in responses:
            assert str(tmp_path) not in response.text, response.text
        assert responses[0].status_code == 422 and "adapters/broken/" in responses[0].json()["error"]["message"]
        assert responses[3].status_code == 500 and "latest.json: not valid JSON" in responses[3].text
        assert responses[5].json()["knowledge_base"] == "my-kb"
    assert public_message("/home/u/.cache/loracle/m.gguf: corrupt") == "m.gguf: corrupt"
    assert public_message(f"{root}/wiki/a.md: bad; {root}: gone", root) == "wiki/a.md: bad; my-kb: gone"
    assert public_message("a \ud800 b") == "a \\ud800 b"


def test_a_bad_or_busy_port_fails_in_one_line(tmp_path: Path) -> None:
    import socket

    from loracle.serve.launch import listening_socket

    for port in (99999, -1):
        with pytest.raises(LoracleError, match=rf"--port {port}: not a port number"):
            listening_socket("127.0.0.1", port)
    with pytest.raises(LoracleError, match="--host no such host: not an address"):
        listening_socket("no such host", 0)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    with pytest.raises(LoracleError, match=rf"127.0.0.1:{port}: cannot listen there \(Address already in use\)"):
        listening_socket("127.0.0.1", port)
    busy.close()
    listening_socket("127.0.0.1", port).close()
