"""Parking events on the real RabbitMQ: a delivery the worker parks and an input record the
ledger parks each reach the events queue after their commit; a rolled-back parking publishes
nothing; a broker that is down costs the hub nothing but a logged, dropped event."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pika
import pytest
from sqlalchemy import Engine

from conveyor import events
from conveyor.config import Project
from conveyor.delivery.worker import Worker, WorkerOptions
from conveyor.ledger import Ledger
from tests.conveyor.delivery.conftest import output, target, write_project
from tests.support.broker import BROKER
from tests.support.events import event_names
from tests.support.recording_target import RecordingTarget

__all__ = ["event_names", "target"]  # fixtures: events names, the recording HTTP target

pytestmark = pytest.mark.rabbitmq


def queued(queue: str) -> list[tuple[str, dict[str, Any]]]:
    """Everything in ``queue`` (routing key, body), taken off it."""
    connection = pika.BlockingConnection(pika.URLParameters(BROKER))
    channel = connection.channel()
    out = []
    while True:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        out.append((method.routing_key, json.loads(body)))
    connection.close()
    return out


def test_a_parked_delivery_is_published_with_its_target_and_reason(
    tmp_path: Path, sqlite_engine: Engine, target: RecordingTarget, event_names: dict[str, str]
) -> None:
    project = write_project(tmp_path / "p", target.url, events={"broker": BROKER, **event_names})
    publisher = events.attach(sqlite_engine, project)
    assert publisher is not None
    target.configure(reject={"mes:GR-2/*": 422})
    Ledger(sqlite_engine, project.router).accept_batch([output(i) for i in range(1, 4)])
    Worker(
        sqlite_engine,
        targets=["erp"],
        project=project,
        options=WorkerOptions.from_project(project),
    ).run(until_idle=True, timeout=30)
    assert publisher.flush(10)
    got = queued(event_names["queue"])
    assert [key for key, _ in got] == ["parked.delivery.erp"]
    event = got[0][1]
    assert (event["kind"], event["target"], event["key"], event["status"]) == (
        "delivery",
        "erp",
        "GR-2/1",
        "parked",
    )
    assert "HTTP 422" in event["reason"]
    assert publisher.published == 1


def _project(root: Path, broker: str, names: dict[str, str]) -> Project:
    return Project(root=root, raw={"events": {"broker": broker, **names}})


def test_a_parked_record_is_published_after_commit_and_a_rollback_publishes_nothing(
    tmp_path: Path, sqlite_engine: Engine, event_names: dict[str, str]
) -> None:
    publisher = events.attach(sqlite_engine, _project(tmp_path, BROKER, event_names))
    assert publisher is not None
    ledger = Ledger(sqlite_engine)
    result = ledger.accept({"type": "production_output", "source": "mes", "key": "X-1"})
    assert result.status == "rejected"
    with sqlite_engine.connect() as conn:
        transaction = conn.begin()
        ledger.park(stage="map", reason="never kept", record={"a": 1}, system="mes", conn=conn)
        transaction.rollback()  # the batch failed
    assert publisher.flush(10)
    got = queued(event_names["queue"])
    assert [key for key, _ in got] == ["parked.record.mes"]
    event = got[0][1]
    assert event["kind"] == "record"
    assert event["stage"] == "validate"
    assert event["parked_id"] == result.parked_id
    assert "never kept" not in json.dumps(got)


def test_a_broker_that_is_down_never_holds_up_the_hub(
    tmp_path: Path, sqlite_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    names = {"exchange": "conveyor.test.down", "queue": "conveyor.test.down"}
    down = "amqp://guest:guest@127.0.0.1:1/%2F?connection_attempts=1&socket_timeout=1"
    publisher = events.attach(sqlite_engine, _project(tmp_path, down, names))
    assert publisher is not None
    ledger = Ledger(sqlite_engine)
    started = time.perf_counter()
    for n in range(3):
        assert ledger.accept({"source": "mes", "key": f"BAD-{n}"}).status == "rejected"
    assert time.perf_counter() - started < 2.0  # the ledger never waits for the broker
    assert publisher.flush(10)
    assert publisher.published == 0
    assert publisher.dropped == 3
    assert "parking event not published" in caplog.text
    assert len(ledger.parked_records()) == 3  # the ledger keeps what the event would have said
