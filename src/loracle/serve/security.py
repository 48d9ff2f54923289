"""What every request passes before a route sees it, as plain ASGI middleware (so no route can miss it).

- `LoopbackOnly` (when no token is set): the Host must name this machine and a browser request must come
  from the server's own page (or a configured CORS origin). Without it, a web page the user visits could
  rebind its own domain to 127.0.0.1 (DNS rebinding) or post to the server across sites, and read or use
  the knowledge base.
- `BearerAuth` (when a token is set): every non-public request needs the token.
- `BodyLimit`: request bodies over a size are refused.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from loracle.serve.errors import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

#: paths anyone may fetch: the page and its assets hold no knowledge-base data
PUBLIC_PREFIXES = ("/static/", "/favicon.ico")
PUBLIC_PATHS = {"/", "/health"}
#: Sec-Fetch-Site values of requests that no other site started (same page, or typed into the address bar)
OWN_SITE = {"same-origin", "none"}


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1), written without brackets or port."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_host_header(value: str) -> bool:
    """True for a Host header naming this machine: localhost, 127.0.0.1, [::1] and the like, with or without a port."""
    if value.startswith("["):  # an IPv6 address: [::1] or [::1]:8321
        host, bracket, port = value[1:].partition("]")
        return bool(bracket) and _port_suffix(port) and ":" in host and is_loopback(host)
    host, colon, port = value.partition(":")
    if colon and not _port_suffix(f":{port}"):
        return False
    return host.lower() == "localhost" or (host.count(".") == 3 and is_loopback(host))


def _port_suffix(text: str) -> bool:
    return text == "" or (text.startswith(":") and text[1:].isdigit() and len(text) <= 6)


async def _send_error(send: Callable[[Message], Awaitable[None]], status: int, body: dict, headers=()) -> None:
    payload = json.dumps(body).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class LoopbackOnly:
    """Refuse (403) requests for another Host, and browser requests another site started.

    A request passes when its Host is a loopback name or address and either its Origin is the server's
    own (http://<that Host>) or one of `allowed_origins` ("*": any), or it has no Origin and the browser
    says no other site started it (Sec-Fetch-Site same-origin or none, or a top-level page navigation,
    whose response the other site cannot read). Clients that are not browsers send neither header.
    """

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = {origin.rstrip("/").lower() for origin in allowed_origins}

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = self.problem(scope)
        if problem:
            body = error_body(problem, "permission_error", "cross_site_request")
            await _send_error(send, 403, body)
            return
        await self.app(scope, receive, send)

    def problem(self, scope: Scope) -> str | None:
        """Why this request is refused, or None."""
        host = _header(scope, b"host") or ""
        if not loopback_host_header(host):
            return (
                f"Host {host[:100]!r} refused: with no token set, this server answers only requests for "
                "localhost, 127.0.0.1 or [::1] (set a token to serve other names)"
            )
        origin = _header(scope, b"origin")
        if origin is not None:
            origin = origin.rstrip("/").lower()
            own = f"{scope.get('scheme', 'http')}://{host}".lower()
            if origin == own or origin in self.allowed or "*" in self.allowed:
                return None
            return f"a request from the page at {origin[:100]!r} refused (not this server's; see serve.cors_origins)"
        site = _header(scope, b"sec-fetch-site")
        if site is None or site in OWN_SITE or _top_level_navigation(scope):
            return None
        return f"a {site} browser request refused (not from this server's page)"


def _top_level_navigation(scope: Scope) -> bool:
    """A link followed to this server from another site: the user sees the response, the other site does not."""
    return (
        scope["method"] in ("GET", "HEAD")
        and _header(scope, b"sec-fetch-mode") == "navigate"
        and _header(scope, b"sec-fetch-dest") in (None, "document")
    )


class BearerAuth:
    """Every non-public request needs `Authorization: Bearer <token>` when a token is set."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token.encode()

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http" or not self.token or _is_public(scope["path"]) or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
            body = error_body("missing or wrong bearer token", "authentication_error", "invalid_api_key")
            await _send_error(send, 401, body, [(b"www-authenticate", b"Bearer")])
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuse request bodies over `max_bytes`: by Content-Length, or while reading a body sent without one.

    The body is read here, before the app sees it (the app's own parsing would turn "too large" into a 400).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_big = error_body(f"request body over {self.max_bytes} bytes", "invalid_request_error", "request_too_large")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _send_error(send, 413, too_big)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await _send_error(send, 413, too_big)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for the client to disconnect
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
