"""The web page in Debian's headless Chromium (Playwright), served by a real server around the embedded model.

Saves a screenshot of each main view to benchmarks/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from loracle.adapters.manifest import AdapterManifest
from loracle.adapters.peft_format import peft_key, write_lora_adapter
from loracle.eval.harness import EvalResult, RunResult
from loracle.eval.report import write_latest
from loracle.kb import KBPaths
from loracle.model.loader import LoadedModel
from loracle.pipeline import wiki_source
from loracle.serve.app import create_app
from loracle.serve.launch import background_server

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "benchmarks" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
KVO = "[[kestrel-valley-observatory|Kestrel Valley Observatory]]"  # links as the wiki writes them: [[stem|Name]]
PAGES = {
    "index": f"---\ntitle: Index\n---\n# Index\n\n- {KVO}\n- [[ilse-marrow|Ilse Marrow]]\n",
    "kestrel-valley-observatory": (
        "---\ntitle: Kestrel Valley Observatory\n---\n# Kestrel Valley Observatory\n\n"
        "The observatory was founded by [[ilse-marrow|Ilse Marrow]] in 1987. "
        "Its main telescope, the **Corra reflector**, is powered by the river Corra.\n\n"
        "See also [[night-sky-survey|the survey]].\n"
    ),
    "ilse-marrow": (
        f"---\ntitle: Ilse Marrow\n---\n# Ilse Marrow\n\nIlse Marrow is an astronomer. She founded the {KVO} in 1987.\n"
    ),
    "night-sky-survey": (
        f"---\ntitle: Night Sky Survey\n---\n# Night Sky Survey\n\nA survey run from the {KVO} since 1990.\n"
    ),
}


def write_wiki(root: Path) -> KBPaths:
    """A knowledge base at `root` whose wiki holds PAGES."""
    (root / "loracle.toml").write_text("")
    kb = KBPaths(root)
    kb.wiki.mkdir()
    for page_id, text in PAGES.items():
        (kb.wiki / f"{page_id}.md").write_text(text, encoding="utf-8")
    return kb


def write_adapter(lm: LoadedModel, folder: Path, page: str, page_hash: str, seed: int) -> None:
    """A real PEFT adapter for the embedded model (small random B), with a manifest naming its page."""
    generator = torch.Generator().manual_seed(seed)
    tensors, config = {}, lm.model.config
    for layer in range(config.num_hidden_layers):
        module = f"model.layers.{layer}.self_attn.q_proj"
        tensors[peft_key(module, "A")] = torch.randn(4, config.hidden_size, generator=generator) * 0.01
        tensors[peft_key(module, "B")] = torch.randn(config.hidden_size, 4, generator=generator) * 0.01
    manifest = AdapterManifest(
        id=folder.name, document_id=page, title=page, content_hash=page_hash, source="wiki", learner="test"
    )
    write_lora_adapter(
        folder,
        tensors,
        r=4,
        alpha=8,
        target_modules=["q_proj"],
        base_model=lm.name,
        manifest={**manifest.model_dump(), "base_fingerprint": lm.fingerprint},
    )


def write_eval(kb: KBPaths) -> None:
    runs = [
        RunResult("floor", "reference", accuracy=0.1, f1=0.2, correct=1, total=10),
        RunResult("ceiling", "reference", accuracy=0.8, f1=0.85, correct=8, total=10),
        RunResult(
            "context",
            "learner",
            accuracy=0.7,
            f1=0.75,
            correct=7,
            total=10,
            learn_seconds_per_doc=0.1,
            ceiling_interval=(0.6, 1.17),
        ),
    ]
    result = EvalResult("SmolLM2-135M-Instruct", "f", ["kestrel-valley-observatory"], 10, {}, {}, runs)
    write_latest(result, kb.state)


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    if not CHROMIUM.is_file():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium, or setup.sh --dev)")
    return CHROMIUM


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory, chromium_path: Path) -> Iterator[str]:
    from loracle.model import load_model

    lm = load_model("embedded")  # our own copy: the server wraps it in PEFT
    root = tmp_path_factory.mktemp("webkb")
    kb = write_wiki(root)
    old_hash = "0" * 64  # compiled from an earlier version of the page: stale
    write_adapter(lm, kb.adapters / "kestrel-valley-observatory", "kestrel-valley-observatory", old_hash, 1)
    current = wiki_source(root).read(kb.wiki / "ilse-marrow.md").hash  # what compile records
    write_adapter(lm, kb.adapters / "ilse-marrow", "ilse-marrow", current, 2)
    (kb.adapters / "Old Copy").mkdir()  # not a valid adapter id: listed apart, never served
    write_eval(kb)
    with background_server(create_app(lm, kb, token="", max_new_tokens=24)) as url:
        yield url


@pytest.fixture(scope="module")
def playwright(chromium_path: Path) -> Iterator[Any]:
    """Playwright for the module (its sync API allows one running instance at a time)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright: Any, chromium_path: Path) -> Iterator[Any]:
    """One headless Chromium for the module."""
    browser = playwright.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


def open_page(browser: Any, url: str) -> Any:
    """`url` in a fresh browser context (its own, empty local storage)."""
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.set_default_timeout(60_000)
    page.goto(url + "/")
    return page


@pytest.fixture(scope="module")
def page(web_server: str, browser: Any):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = open_page(browser, web_server)
    yield page
    page.context.close()


def test_open_a_page_and_follow_a_wikilink(page) -> None:
    page.wait_for_selector("#page-body h1:text('Index')")
    page.click("#page-body a.wikilink:text('Kestrel Valley Observatory')")
    page.wait_for_selector("#page-body h1:text('Kestrel Valley Observatory')")
    assert page.url.endswith("#/page/kestrel-valley-observatory.md")
    assert page.inner_text("#page-body strong") == "Corra reflector"
    backlinks = page.inner_text("#backlinks")
    assert "Ilse Marrow" in backlinks and "Night Sky Survey" in backlinks
    page.wait_for_selector("#findings li")
    assert "lint unavailable" not in page.inner_text("#findings")
    page.screenshot(path=str(SCREENSHOTS / "wiki.png"))
    page.click("#page-body a.wikilink:text('the survey')")
    page.wait_for_selector("#page-body h1:text('Night Sky Survey')")


def test_search_as_you_type(page) -> None:
    page.fill("#search", "founder astronomer")
    page.wait_for_selector("#search-results li a")
    titles = page.locator("#search-results li a strong").all_inner_texts()
    assert "Ilse Marrow" in titles
    page.screenshot(path=str(SCREENSHOTS / "search.png"))
    page.click("#search-results li a:has-text('Ilse Marrow')")
    page.wait_for_selector("#page-body h1:text('Ilse Marrow')")


def test_graph_shows_pages_and_links(page) -> None:
    page.click("nav a[data-view=graph]")
    page.wait_for_selector("#graph g.node")
    assert page.locator("#graph g.node").count() == len(PAGES)
    assert page.locator("#graph line.edge").count() >= 5
    page.screenshot(path=str(SCREENSHOTS / "graph.png"))


def test_ask_streams_an_answer_and_the_context_learner_cites(page) -> None:
    page.click("nav a[data-view=ask]")
    page.wait_for_selector("#adapter-choice label.adapter", state="attached")
    assert page.is_checked("input[name=mode][value=adapters]")  # compiled adapters exist: they answer by default
    page.check("input[name=mode][value=base]")
    page.fill("#question", "Who founded the Kestrel Valley Observatory?")
    page.click("#ask-button")
    page.wait_for_function("document.querySelector('#answer-meta').textContent.includes('base model')")
    assert page.inner_text("#answer").strip()
    page.check("input[name=mode][value=chosen]")
    page.check("#adapter-choice input[value=ilse-marrow]")
    page.click("#ask-button")
    page.wait_for_function("document.querySelector('#answer-meta').textContent.includes('with chosen adapters')")
    assert "ilse-marrow" in page.inner_text("#citations")
    page.check("input[name=mode][value=context]")
    page.uncheck("#adapter-choice input[value=ilse-marrow]")
    page.click("#ask-button")
    page.wait_for_function("document.querySelector('#answer-meta').textContent.includes('context learner')")
    assert "Kestrel Valley Observatory" in page.inner_text("#citations") or "Ilse Marrow" in page.inner_text(
        "#citations"
    )
    assert page.inner_text("#answer").strip()
    page.screenshot(path=str(SCREENSHOTS / "ask.png"))
    page.check("input[name=mode][value=wiki]")
    page.click("#ask-button")
    page.wait_for_function("document.querySelector('#answer-meta').textContent.includes('the wiki')")
    assert page.locator("#citations li a").count() >= 1
    page.screenshot(path=str(SCREENSHOTS / "ask-wiki.png"))


def test_ask_from_the_compiled_adapters_links_the_documents_that_answered(page) -> None:
    page.click("nav a[data-view=ask]")
    page.check("input[name=mode][value=adapters]")
    page.fill("#question", "Who founded the Kestrel Valley Observatory?")
    page.click("#ask-button")
    page.wait_for_function("document.querySelector('#answer-meta').textContent.includes('from the compiled adapters')")
    assert page.is_hidden("#adapter-choice")  # the router chooses
    link = page.locator("#citations li.document a").first
    target = link.get_attribute("data-page")
    assert target in {"kestrel-valley-observatory.md", "ilse-marrow.md"}
    if target == "kestrel-valley-observatory.md":  # compiled from an earlier version of its page
        assert "kestrel-valley-observatory is stale" in page.inner_text("#citations li.warning")
    page.screenshot(path=str(SCREENSHOTS / "ask-adapters.png"))
    page.fill("#question", "What is the capital of France?")
    page.click("#ask-button")
    page.wait_for_function("document.querySelector('#citations').textContent.includes('no adapter matched')")
    page.click("nav a[data-view=ask]")
    page.fill("#question", "Who founded the Kestrel Valley Observatory?")
    page.click("#ask-button")
    page.wait_for_selector("#citations li.document a")
    page.click("#citations li.document a")
    page.wait_for_selector("#page-body h1")
    assert page.url.endswith(f"#/page/{target}")


def test_adapter_inventory_and_eval(page) -> None:
    page.click("nav a[data-view=adapters]")
    page.wait_for_selector("#adapter-table tbody tr td")
    rows = page.locator("#adapter-table tbody tr").all_inner_texts()
    assert any("kestrel-valley-observatory" in r and "stale" in r for r in rows)
    assert any("ilse-marrow" in r and "current" in r for r in rows)
    assert any("Old Copy" in r and "not served: not a valid adapter id" in r for r in rows)
    page.screenshot(path=str(SCREENSHOTS / "adapters.png"))
    page.click("nav a[data-view=eval]")
    page.wait_for_selector("#eval-table tbody tr")
    assert page.locator("#eval-table tbody tr").count() == 3
    assert "87% (60%–117%)" in page.locator("#eval-table tbody tr.learner").inner_text()
    page.wait_for_function("document.querySelector('#eval-chart').naturalWidth > 0")
    page.screenshot(path=str(SCREENSHOTS / "eval.png"), full_page=True)


def test_screenshots_written() -> None:
    for name in ("wiki", "search", "graph", "ask", "ask-adapters", "adapters", "eval"):
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 5000


def test_a_server_with_a_token_asks_for_it_and_keeps_asking_until_it_is_right(
    tmp_path: Path, browser: Any, tiny_lm: LoadedModel
) -> None:
    kb = write_wiki(tmp_path)
    token = "s3cret-token"
    with background_server(create_app(tiny_lm, kb, token=token, max_new_tokens=4)) as url:
        page = open_page(browser, url)
        page.wait_for_selector("#token-bar", state="visible")
        assert "needs a token" in page.inner_text("#error")
        assert page.locator("#page-body h1").count() == 0  # nothing of the wiki without the token
        page.fill("#token", "wrong-token")
        page.click("#token-save")
        page.wait_for_selector("#token-bar", state="visible")  # hidden on click, shown again by the 401
        assert page.locator("#page-body h1").count() == 0
        page.fill("#token", token)
        page.click("#token-save")
        page.wait_for_selector("#page-body h1:text('Index')")
        assert page.is_hidden("#token-bar")
        assert page.evaluate("localStorage.getItem('loracle-token')") == token
        page.context.close()


def test_a_rebound_domain_gets_nothing_and_the_page_itself_still_works(
    tmp_path: Path, playwright: Any, chromium_path: Path, tiny_lm: LoadedModel
) -> None:
    """DNS rebinding: a site the user visits points its own name at 127.0.0.1 (here Chromium's resolver maps
    evil.test there), so its page is same-origin with the server. Without a token the server refuses it,
    while its own page, at 127.0.0.1, reads the wiki and posts a chat as before."""
    kb = write_wiki(tmp_path)
    rebinding = [*CHROMIUM_ARGS, "--host-resolver-rules=MAP evil.test 127.0.0.1"]
    browser = playwright.chromium.launch(executable_path=str(chromium_path), args=rebinding)
    with background_server(create_app(tiny_lm, kb, token="", max_new_tokens=4)) as url:
        port = url.rsplit(":", 1)[1]
        page = browser.new_page()
        response = page.goto(f"http://evil.test:{port}/")
        assert response.status == 403 and "Host 'evil.test:" in page.content()
        assert page.evaluate("fetch('/api/pages').then((r) => r.status)") == 403
        own = open_page(browser, url)
        own.wait_for_selector("#page-body h1:text('Index')")
        own.click("nav a[data-view=ask]")
        own.fill("#question", "Who founded the observatory?")
        own.click("#ask-button")  # the base model: a POST to /v1/chat/completions with the page's own Origin
        own.wait_for_function("document.querySelector('#answer-meta').textContent.includes('base model')")
        assert "error" not in own.inner_text("#error").lower()
    browser.close()
