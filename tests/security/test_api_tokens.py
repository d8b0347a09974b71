"""The API rejects missing, wrong and wrong-scope tokens on every route it has — found from the
app itself, so a route added later is covered without editing this test (tests/conveyor/api/
test_security.py checks the routes it lists by name, and token storage)."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from conveyor.api.tokens import TokenStore
from conveyor.config import Project

OPEN = {"/healthz", "/readyz"}
"""Routes that need no token (a load balancer's probes)."""


def _routes(client: TestClient) -> list[tuple[str, str]]:
    """Every (method, path) of the app, path parameters filled in."""
    found = []
    for route in client.app.routes:  # type: ignore[attr-defined]
        if not isinstance(route, APIRoute) or route.path in OPEN:
            continue
        if not route.include_in_schema:
            continue
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        found += [(method, path) for method in sorted(route.methods - {"HEAD"})]
    return found


def _bad_headers(token: str) -> dict[str, dict[str, str]]:
    return {
        "no header": {},
        "not a token": {"Authorization": "Bearer cvy_not-a-token"},
        "empty bearer": {"Authorization": "Bearer "},
        "basic scheme": {"Authorization": f"Basic {token}"},
        "token without scheme": {"Authorization": token},
        "token cut short": {"Authorization": f"Bearer {token[:-1]}"},
        "token lengthened": {"Authorization": f"Bearer {token}0"},
        "another header": {"X-Api-Key": token},
    }


def test_every_route_needs_a_valid_token(client: TestClient, tokens: dict[str, str]) -> None:
    routes = _routes(client)
    assert len(routes) >= 10, routes
    for method, path in routes:
        for name, headers in _bad_headers(tokens["operate"]).items():
            answer = client.request(method, path, content=b"{}", headers=headers)
            assert answer.status_code == 401, (method, path, name, answer.status_code)
            assert tokens["operate"] not in answer.text
        in_query = client.request(method, f"{path}?token={tokens['operate']}", content=b"{}")
        assert in_query.status_code == 401, (method, path, "token in the query")


def test_every_route_refuses_some_scope_and_admits_another(
    client: TestClient, tokens: dict[str, str]
) -> None:
    for method, path in _routes(client):
        codes = {
            scope: client.request(
                method, path, content=b"{}", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            for scope, token in tokens.items()
        }
        assert 401 not in codes.values(), (method, path, codes)
        assert 403 in codes.values(), (method, path, codes)  # no route is open to every scope
        assert any(code != 403 for code in codes.values()), (method, path, codes)


def test_a_removed_token_is_refused_at_once(
    client: TestClient, tokens: dict[str, str], project: Project
) -> None:
    headers = {"Authorization": f"Bearer {tokens['operate']}"}
    assert client.get("/v1/status", headers=headers).status_code == 200
    assert TokenStore.of_project(project.root).remove("t-operate")
    for method, path in _routes(client):
        answer = client.request(method, path, content=b"{}", headers=headers)
        assert answer.status_code == 401, (method, path)


@pytest.mark.parametrize("scope", ["ingest", "read"])
def test_a_scope_cannot_operate(client: TestClient, tokens: dict[str, str], scope: str) -> None:
    answer = client.post(
        "/v1/replay",
        json={"all": True},
        headers={"Authorization": f"Bearer {tokens[scope]}"},
    )
    assert answer.status_code == 403
