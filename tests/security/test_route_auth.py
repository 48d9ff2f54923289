"""Auth on every route, read from the app's own route table: a route added later is covered without
touching this file. Only the page, its assets and /health are public, and they hold no knowledge-base data."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from starlette.routing import BaseRoute, Mount, Route

from loracle.kb import KBPaths
from loracle.model.loader import LoadedModel
from loracle.serve.app import create_app
from tests.security.conftest import TOKEN, Client

#: the routes anyone may fetch (path as the route table names it)
PUBLIC = {"/", "/health", "/static"}


def flat_routes(app: FastAPI) -> list[tuple[BaseRoute, str, set[str] | None]]:
    """(route, path, methods) of every route, routers included (newer FastAPI nests included routers)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes is already flat
        return [(r, r.path, getattr(r, "methods", None)) for r in app.routes]
    return [(c.original_route, c.path, c.methods) for c in iter_route_contexts(app.routes)]


def route_table(app: FastAPI) -> list[tuple[str, str, str]]:
    """(method, route path, a concrete path to request) for every route and method the app serves."""
    table = []
    for route, path, methods in flat_routes(app):
        if isinstance(route, Mount):
            table.append(("GET", path, f"{path}/app.js"))
        elif isinstance(route, Route):
            concrete = re.sub(r"\{[^}]+\}", "index.md", path)
            table += [(method, path, concrete) for method in sorted(methods or {"GET"}) if method != "HEAD"]
        else:
            raise AssertionError(f"a route of an unknown kind: {route!r}")
    return table


@pytest.fixture
def routes(tiny_lm: LoadedModel, kb: KBPaths) -> list[tuple[str, str, str]]:
    table = route_table(create_app(tiny_lm, kb, token=TOKEN))
    assert len(table) >= 18 and {"/v1/chat/completions", "/api/pages/{page_id:path}"} <= {r[1] for r in table}
    return table


def test_every_route_but_the_public_ones_needs_the_token(client: Client, routes) -> None:
    c = client(token=TOKEN)
    for method, path, concrete in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic x"}):
            response = c.request(method, concrete, headers=headers, json={})
            if path in PUBLIC:
                assert response.status_code == 200, (method, concrete)
            else:
                assert response.status_code == 401, (method, concrete, headers, response.status_code)
                assert response.json()["error"]["type"] == "authentication_error"
        right = c.request(method, concrete, headers={"Authorization": f"Bearer {TOKEN}"}, json={})
        assert right.status_code != 401, (method, concrete)


def test_without_a_token_every_route_refuses_a_foreign_host_or_page(client: Client, routes) -> None:
    c = client()
    for method, _path, concrete in routes:
        for headers in ({"Host": "evil.example"}, {"Origin": "http://evil.example"}):
            response = c.request(method, concrete, headers=headers, json={})
            assert response.status_code == 403, (method, concrete, headers)
