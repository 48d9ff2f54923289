"""Fixtures for attacking the server: a knowledge base with a secret beside it, and clients of the app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loracle.config import ServeConfig
from loracle.kb import KBPaths
from loracle.model.loader import LoadedModel
from loracle.serve.app import create_app
from tests.security.kb import build_kb

#: TestClient's base URL for a server with no token (which answers only loopback Host names)
LOCAL = "http://127.0.0.1:8321"
TOKEN = "s3cret-token"

Client = Callable[..., TestClient]


@pytest.fixture
def kb(tmp_path: Path, tiny_lm: LoadedModel) -> KBPaths:
    return build_kb(tmp_path / "kb", tiny_lm)


@pytest.fixture
def client(tiny_lm: LoadedModel, kb: KBPaths) -> Iterator[Client]:
    """client(token="", cors_origins=()) -> a TestClient of the app on the tiny model and `kb`, at LOCAL."""
    with ExitStack() as stack:

        def make(token: str = "", cors_origins: tuple[str, ...] = ()) -> TestClient:
            app = create_app(tiny_lm, kb, config=ServeConfig(cors_origins=list(cors_origins)), token=token)
            return stack.enter_context(TestClient(app, base_url=LOCAL))

        yield make
