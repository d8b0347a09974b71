"""Tokens and scopes, the body size limit, and the XML guard."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from conveyor.api.tokens import TokenStore, token_hash
from conveyor.config import Project
from tests.conveyor.api.conftest import auth, output

ROUTES = [
    ("get", "/v1/stock", "read"),
    ("get", "/v1/stock/alerts", "read"),
    ("get", "/v1/parked", "read"),
    ("get", "/v1/status", "read"),
    ("get", "/v1/reconciliations", "read"),
    ("get", "/v1/messages/anything", "read"),
    ("get", "/metrics", "read"),
    ("post", "/v1/messages", "ingest"),
    ("post", "/v1/ingest/mes/production_output", "ingest"),
    ("post", "/v1/replay", "operate"),
]


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
def test_every_route_needs_a_token(client: TestClient, method: str, path: str, scope: str) -> None:
    answer = client.request(method, path, content=b"{}")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    wrong = client.request(method, path, content=b"{}", headers=auth("cvy_not-a-token"))
    assert wrong.status_code == 401


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
def test_a_token_without_the_scope_gets_403(
    client: TestClient, tokens: dict[str, str], method: str, path: str, scope: str
) -> None:
    others = [name for name in ("ingest", "read") if name != scope]
    for other in others:
        answer = client.request(method, path, content=b"{}", headers=auth(tokens[other]))
        assert answer.status_code == 403, (other, path)


def test_operate_reads_but_an_mes_token_only_posts(
    client: TestClient, tokens: dict[str, str]
) -> None:
    assert client.get("/v1/status", headers=auth(tokens["operate"])).status_code == 200
    posted = client.post("/v1/messages", json=output("A-1"), headers=auth(tokens["ingest"]))
    assert posted.status_code == 202
    replay = {"all": True, "dry_run": True}
    as_mes = client.post("/v1/replay", json=replay, headers=auth(tokens["ingest"]))
    assert as_mes.status_code == 403
    as_operator = client.post("/v1/replay", json=replay, headers=auth(tokens["operate"]))
    assert as_operator.status_code == 200


def test_health_and_readiness_need_no_token(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"ledger": "ok"}


def test_tokens_are_stored_as_hashes_and_revoked_at_once(
    client: TestClient, project: Project, tokens: dict[str, str]
) -> None:
    stored = (project.root / ".conveyor" / "tokens.json").read_text()
    assert tokens["read"] not in stored
    assert token_hash(tokens["read"]) in stored
    assert (project.root / ".conveyor" / "tokens.json").stat().st_mode & 0o077 == 0
    assert client.get("/v1/status", headers=auth(tokens["read"])).status_code == 200
    assert TokenStore.of_project(project.root).remove("t-read")
    assert client.get("/v1/status", headers=auth(tokens["read"])).status_code == 401


def test_an_announced_oversize_body_gets_413_before_it_is_read(
    client: TestClient, tokens: dict[str, str]
) -> None:
    big = b"[" + b" " * (70 * 1024) + b"]"
    answer = client.post("/v1/messages", content=big, headers=auth(tokens["ingest"]))
    assert answer.status_code == 413
    assert "max_body_bytes" in answer.json()["detail"]


def test_a_streamed_oversize_body_gets_413(client: TestClient, tokens: dict[str, str]) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    answer = client.post("/v1/messages", content=chunks(), headers=auth(tokens["ingest"]))
    assert answer.status_code == 413


def test_too_many_messages_in_one_body_gets_413(client: TestClient, tokens: dict[str, str]) -> None:
    batch = [output(f"K-{n}") for n in range(51)]
    answer = client.post("/v1/messages", json=batch, headers=auth(tokens["ingest"]))
    assert answer.status_code == 413
    assert "api.max_messages" in answer.json()["detail"]


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ProductionPerformance xmlns="http://www.mesa.org/xml/B2MML"><ID>&xxe;</ID></ProductionPerformance>
"""


@pytest.mark.parametrize("content_type", ["application/xml", "application/b2mml+xml", "text/xml"])
def test_xml_with_an_external_entity_is_refused_and_parked(
    client: TestClient, tokens: dict[str, str], api_ledger: object, content_type: str
) -> None:
    answer = client.post(
        "/v1/ingest/mes/production_output",
        content=XXE,
        headers={**auth(tokens["ingest"]), "Content-Type": content_type},
    )
    assert answer.status_code == 400
    assert "DOCTYPE" in answer.json()["detail"]
    parked = api_ledger.parked_records(system="mes")  # type: ignore[attr-defined]
    assert len(parked) == 1
    assert "xml.doctype" in parked[0].reason
    assert "root:" not in parked[0].record


def test_utf16_xml_with_an_entity_is_refused(client: TestClient, tokens: dict[str, str]) -> None:
    answer = client.post(
        "/v1/ingest/mes/production_output",
        content=XXE.decode().encode("utf-16"),
        headers={**auth(tokens["ingest"]), "Content-Type": "application/xml"},
    )
    assert answer.status_code == 400


def test_no_token_reaches_a_log_line(
    client: TestClient, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    from conveyor.runtime.hub import redact_uvicorn_logs

    redact_uvicorn_logs()
    logger = logging.getLogger("uvicorn.access")
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        token = tokens["read"]
        logger.info("GET /v1/stock?token=%s Authorization: Bearer %s", token, token)
    assert caplog.records
    assert all(tokens["read"] not in r.getMessage() for r in caplog.records)
    assert client.get("/v1/stock", headers=auth(tokens["read"])).status_code == 200


def test_cors_is_off_by_default(client: TestClient, tokens: dict[str, str]) -> None:
    answer = client.get(
        "/v1/status", headers={**auth(tokens["read"]), "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in answer.headers
    assert json.loads(answer.text)["transport"] == "embedded"
