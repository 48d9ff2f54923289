"""DNS rebinding and cross-site requests: with no token the server answers only requests for a loopback
Host, from its own page (or a configured CORS origin); with a token, the token alone decides."""

from __future__ import annotations

import httpx
import pytest

from loracle.kb import KBPaths
from loracle.model.loader import LoadedModel
from loracle.serve.app import create_app
from loracle.serve.launch import background_server
from tests.security.conftest import LOCAL, TOKEN, Client

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
LOOPBACK_HOSTS = ["localhost", "localhost:8321", "LocalHost:8321", "127.0.0.1", "127.0.0.1:8321", "[::1]", "[::1]:8321"]
FOREIGN_HOSTS = [
    "evil.example",
    "evil.example:8321",
    "127.0.0.1.nip.io:8321",
    "localhost.evil.example",
    "0.0.0.0:8321",
    "192.168.1.20:8321",
    "[::ffff:7f00:1]:8321",
    "127.0.0.1:8321:1",
    "",
]


def refused(response: httpx.Response) -> bool:
    error = response.json()["error"]
    return response.status_code == 403 and error["type"] == "permission_error" and "\n" not in error["message"]


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_no_token_answers_loopback_hosts(client: Client, host: str) -> None:
    response = client().get("/api/pages", headers={"Host": host})
    assert response.status_code == 200 and response.json()["pages"]


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_no_token_refuses_every_other_host(client: Client, host: str) -> None:
    for path in ("/api/pages", "/api/info", "/v1/models", "/", "/health", "/static/app.js"):
        assert refused(client().get(path, headers={"Host": host})), (host, path)
    assert refused(client().post("/v1/chat/completions", json=CHAT, headers={"Host": host}))


def test_no_token_refuses_pages_of_other_sites(client: Client) -> None:
    c = client()
    for origin in ("http://evil.example", "null", "http://localhost:8321", "https://127.0.0.1:8321", LOCAL + ".x"):
        assert refused(c.post("/v1/chat/completions", json=CHAT, headers={"Origin": origin})), origin
        assert refused(c.get("/api/pages", headers={"Origin": origin})), origin
    for site in ("cross-site", "same-site"):  # no Origin (an <img> or <script> tag), but the browser says who
        assert refused(c.get("/api/pages", headers={"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "no-cors"})), site
        navigate_post = {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
        assert refused(c.post("/v1/chat/completions", json=CHAT, headers=navigate_post)), site
        iframe = {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}
        assert refused(c.get("/", headers=iframe)), site


def test_no_token_answers_its_own_page_and_plain_clients(client: Client) -> None:
    c = client()
    own = {"Origin": LOCAL, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}
    assert c.post("/v1/chat/completions", json=CHAT, headers=own).status_code == 200
    assert c.get("/api/pages", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert c.get("/", headers={"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"}).status_code == 200
    link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    assert c.get("/", headers=link).status_code == 200  # a link to the server from another site opens the page
    assert c.post("/v1/chat/completions", json=CHAT).status_code == 200  # curl, the openai client: no Origin
    ipv6 = {"Host": "[::1]:8321", "Origin": "http://[::1]:8321"}
    assert c.post("/v1/chat/completions", json=CHAT, headers=ipv6).status_code == 200


def test_configured_cors_origins_keep_working_without_a_token(client: Client) -> None:
    c = client(cors_origins=("http://app.example:3000",))
    allowed = {"Origin": "http://app.example:3000", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"}
    response = c.post("/v1/chat/completions", json=CHAT, headers=allowed)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://app.example:3000"
    preflight = {**allowed, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    assert c.options("/v1/chat/completions", headers=preflight).status_code == 200
    other = {**preflight, "Origin": "http://evil.example"}
    assert refused(c.options("/v1/chat/completions", headers=other))
    assert refused(c.get("/api/pages", headers={"Origin": "http://app.example:3000", "Host": "evil.example"}))


def test_with_a_token_the_token_decides(client: Client) -> None:
    c = client(token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for headers in ({"Host": "evil.example"}, {"Origin": "http://evil.example"}, {"Host": "192.168.1.20:8321"}):
        assert c.get("/api/pages", headers={**headers, **auth}).status_code == 200, headers
        assert c.get("/api/pages", headers=headers).status_code == 401, headers


def test_the_issue_repro_over_real_http(tiny_lm: LoadedModel, kb: KBPaths) -> None:
    """`curl -H 'Host: evil.example' http://127.0.0.1:P/api/pages` answered 200 with the wiki."""
    with background_server(create_app(tiny_lm, kb, token="")) as url:
        assert refused(httpx.get(f"{url}/api/pages", headers={"Host": "evil.example"}))
        assert refused(httpx.get(f"{url}/api/info", headers={"Host": "evil.example"}))
        assert httpx.get(f"{url}/api/pages").status_code == 200
