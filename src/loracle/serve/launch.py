"""Starting the server: refuse to expose it beyond this machine without a token; bind the port before
anything slow happens (so a bad or busy port fails in one line); run it in the foreground or a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from loracle.errors import LoracleError
from loracle.serve.security import is_loopback


def check_exposure(host: str, token: str) -> None:
    """Binding to a non-loopback address without a bearer token would hand the knowledge base to the network."""
    if not is_loopback(host) and not token:
        raise LoracleError(
            f"--host {host}: refusing to listen beyond this machine without a token "
            "(set serve.token in loracle.toml or the environment variable serve.token_env names)"
        )


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: any free one), or one line saying why it cannot be."""
    if not 0 <= port <= 65535:
        raise LoracleError(f"--port {port}: not a port number (0 to 65535)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise LoracleError(f"--host {host}: not an address to listen on ({exc})") from exc
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise LoracleError(f"{host}:{port}: cannot listen there ({exc.strerror or exc})") from exc
    return sock


def bound_port(sock: socket.socket) -> int:
    return sock.getsockname()[1]


def _server(app: Any, log_level: str = "warning") -> Any:
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))


def serve_forever(app: Any, sock: socket.socket) -> None:
    """Serve `app` on an already bound socket until Ctrl-C."""
    _server(app).run(sockets=[sock])


@contextlib.contextmanager
def background_server(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run `app` under uvicorn in a thread (port 0 = any free port); yields its base URL, stops on exit."""
    sock = listening_socket(host, port)
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="loracle-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise LoracleError(f"{host}:{port}: the server did not start")
        time.sleep(0.02)
    name = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{name}:{bound_port(sock)}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
