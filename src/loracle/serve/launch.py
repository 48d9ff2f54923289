"""Starting the server: refuse to expose it beyond this machine without a token; run it in a thread."""

from __future__ import annotations

import contextlib
import ipaddress
import threading
import time
from collections.abc import Iterator
from typing import Any

from loracle.errors import LoracleError

LOCAL_NAMES = {"localhost", "127.0.0.1", "::1"}


def is_loopback(host: str) -> bool:
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str) -> None:
    """Binding to a non-loopback address without a bearer token would hand the knowledge base to the network."""
    if not is_loopback(host) and not token:
        raise LoracleError(
            f"--host {host}: refusing to listen beyond this machine without a token "
            "(set serve.token in loracle.toml or the environment variable serve.token_env names)"
        )


@contextlib.contextmanager
def background_server(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run `app` under uvicorn in a thread (port 0 = any free port); yields its base URL, stops on exit."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="loracle-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise LoracleError(f"{host}:{port}: the server did not start")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
