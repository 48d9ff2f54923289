"""The server's parts on the tiny model: adapter pool, stop strings, rendering, ids, security, exposure."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from loracle.config import ServeConfig
from loracle.errors import AdapterError, LoracleError
from loracle.kb import KBPaths
from loracle.model import GenerationConfig, apply_adapters, encode_chat
from loracle.model.loader import LoadedModel, model_fingerprint
from loracle.serve.adapter_pool import AdapterPool, normalise_spec
from loracle.serve.app import create_app
from loracle.serve.catalog import AdapterCatalog, InvalidAdapterIdError, UnknownAdapterError
from loracle.serve.generation import Finish, _partial_stop_length, generation_steps
from loracle.serve.inventory import AdapterInventory
from loracle.serve.launch import check_exposure
from loracle.serve.render import render_markdown
from loracle.serve.wiki_view import WikiView
from tests.conftest import build_tiny_model
from tests.unit.test_adapters import make_adapter


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
    rows = {r["id"]: r for r in AdapterInventory(kb, AdapterCatalog(kb.adapters)).rows({"a"})}
    assert rows["a"]["stale"] is False and rows["a"]["loaded"] and rows["a"]["page"] == "a.md"
    assert rows["b"]["stale"] is True and rows["gone"]["stale"] is True and rows["gone"]["page"] is None
    assert rows["a"]["size_bytes"] > 0


def test_lint_and_pages_api(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    (tmp_path / "wiki").mkdir()
    (tmp_path / "wiki" / "a.md").write_text("# A\n\nSee [[nowhere]].")
    with TestClient(create_app(tiny_lm, tmp_path, token="")) as client:
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
    with TestClient(create_app(fresh(tiny_lm), tmp_path, config=ServeConfig(cors_origins=["http://x"]), token="")) as c:
        assert c.get("/health", headers={"Origin": "http://x"}).headers["access-control-allow-origin"] == "http://x"


def test_bad_requests_get_openai_error_bodies(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    with TestClient(create_app(tiny_lm, tmp_path, token="")) as client:
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
