"""Back pressure: while the ledger is slow (its write lock held by another connection, on SQLite
and on PostgreSQL) what waits for it is bounded. Past ``api.max_queued_messages`` waiting
messages, or ``api.max_queued_bodies`` bodies, the API answers 503 with ``Retry-After`` and takes
nothing; once the ledger moves again the same request is accepted, and what waited is stored."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from conveyor.api import ApiSettings, create_app
from conveyor.api.batcher import Admission, Busy, GroupCommit
from conveyor.api.tokens import TokenStore
from conveyor.config import Project
from conveyor.errors import ConfigError
from conveyor.ledger import Ledger
from tests.conveyor.api.conftest import CONFIG, auth, output
from tests.support.held_ledger import ledger_held

LIMIT = 100


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """The API tests' project (mes → erp)."""
    (tmp_path / "conveyor.yaml").write_text(CONFIG, encoding="utf-8")
    return Project.load(tmp_path)


@pytest.fixture
def hub(project: Project, engine: Engine) -> Iterator[tuple[TestClient, Ledger, str]]:
    """A client of the app with small bounds (100 messages, 1 body), its ledger, an ingest
    token."""
    ledger = Ledger(engine, project.router)
    token = TokenStore.of_project(project.root).add("line-1", "ingest")
    settings = ApiSettings(
        max_messages=50, max_queued_messages=LIMIT, max_queued_bodies=1, retry_after_s=3
    )
    app = create_app(project, ledger=ledger, settings=settings)
    with TestClient(app) as client:
        yield client, ledger, token
    app.state.hub.accepter.stop()


def ledger_project(client: TestClient) -> Path:
    """The project folder of the client's app."""
    root: Path = client.app.state.hub.project.root  # type: ignore[attr-defined]
    return root


def wait_for(condition: object, timeout: float = 10.0) -> None:
    """Until ``condition()`` holds (a test failure after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_admission_lets_one_in_when_empty_and_refuses_past_the_bound() -> None:
    admission = Admission("messages", 10, retry_after_s=5)
    admission.enter(25)  # alone, larger than the bound: still let in
    with pytest.raises(Busy) as refused:
        admission.enter(1)
    assert (refused.value.waiting, refused.value.limit, refused.value.retry_after_s) == (25, 10, 5)
    admission.leave(25)
    admission.enter(6)
    admission.enter(4)
    with pytest.raises(Busy):
        admission.check()
    assert admission.waiting == 10


def test_a_slow_ledger_gets_503_with_retry_after_not_an_unbounded_queue(
    hub: tuple[TestClient, Ledger, str],
) -> None:
    client, ledger, token = hub
    accepter: GroupCommit = client.app.state.hub.accepter  # type: ignore[attr-defined]
    waiting = [output(f"W-{n}") for n in range(LIMIT)]
    with ledger_held(ledger.engine):
        held = accepter.submit(waiting, [None] * len(waiting))  # waits behind the lock
        time.sleep(0.2)
        assert not held.done()
        assert accepter.admission.waiting == LIMIT
        refused = [
            client.post("/v1/messages", json=[output(f"R-{n}")], headers=auth(token))
            for n in range(20)
        ]
        statuses = {answer.status_code for answer in refused}
        print(f"\nledger held: {LIMIT} messages waiting, 20 more requests → {statuses}")
        assert statuses == {503}
        assert refused[0].headers["Retry-After"] == "3"
        assert "busy" in refused[0].json()["detail"]
        assert accepter.admission.waiting == LIMIT  # the refused ones hold nothing
    assert [r.status for r in held.result(timeout=60)] == ["accepted"] * LIMIT
    assert accepter.admission.waiting == 0
    again = client.post("/v1/messages", json=[output("R-0")], headers=auth(token))
    assert again.status_code == 202
    assert len(ledger.trace("R-0")["messages"]) == 1
    reader = TokenStore.of_project(ledger_project(client)).add("scraper", "read")
    metrics = client.get("/metrics", headers=auth(reader))
    assert 'conveyor_api_busy_total{waiting="messages"} 20.0' in metrics.text


def test_a_body_past_the_bound_is_refused_before_it_is_read(
    hub: tuple[TestClient, Ledger, str],
) -> None:
    client, ledger, token = hub
    headers = {**auth(token), "Content-Type": "application/json"}
    body = json.dumps([output("I-1")]).encode()
    answers: list[int] = []
    bodies: Admission = client.app.state.hub.bodies  # type: ignore[attr-defined]
    with ledger_held(ledger.engine):
        first = threading.Thread(
            target=lambda: answers.append(
                client.post(
                    "/v1/ingest/mes/production_output", content=body, headers=headers
                ).status_code
            )
        )
        first.start()
        wait_for(lambda: bodies.waiting == 1)
        second = client.post("/v1/ingest/mes/production_output", content=body, headers=headers)
        assert second.status_code == 503
        assert second.headers["Retry-After"] == "3"
    first.join(timeout=60)
    assert answers == [200]  # taken in once the ledger moved
    assert len(ledger.trace("I-1")["messages"]) == 1
    assert bodies.waiting == 0


def test_the_bounds_are_set_in_conveyor_yaml(tmp_path: Path) -> None:
    bounds = "api: {max_queued_messages: 500, max_queued_bodies: 4, retry_after_s: 7}\n"
    (tmp_path / "conveyor.yaml").write_text(CONFIG + bounds, encoding="utf-8")
    settings = ApiSettings.of(Project.load(tmp_path))
    assert (settings.max_queued_messages, settings.max_queued_bodies) == (500, 4)
    assert settings.retry_after_s == 7
    (tmp_path / "conveyor.yaml").write_text(CONFIG + "api: {retry_after_s: 0}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="retry_after_s"):
        Project.load(tmp_path)
