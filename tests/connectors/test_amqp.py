"""The ``amqp`` connector against the real broker (a queue of its own per test): B2MML and JSON
messages taken in and acknowledged only after their commit, unreadable ones parked and rejected
without requeue, a database refusal leaving the message queued, and a consumer process killed
mid-way (SIGKILL) and restarted taking every material actual in exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
import yaml
from sqlalchemy import Engine, text

from connectors.amqp import AmqpConnector
from connectors.b2mml.samples import document
from conveyor.config import Project
from conveyor.errors import ConfigError
from conveyor.ledger import Ledger
from conveyor.mapping import MappingEngine
from conveyor.runtime import registry
from conveyor.runtime.inbound import receive_units
from tests.connectors.b2mml.conftest import REPO, SCHEMAS
from tests.support.broker import BROKER, broker_available
from tests.support.refusing_db import refusing_messages

needs_broker = pytest.mark.rabbitmq


@pytest.fixture
def broker() -> str:
    if not broker_available():
        if os.environ.get("CI"):
            pytest.fail("RabbitMQ is not reachable on 127.0.0.1:5672 (CI must start it)")
        pytest.skip("RabbitMQ not reachable")
    return BROKER


@pytest.fixture
def queue(broker: str) -> Iterator[str]:
    """A queue name of this test's own, deleted afterwards."""
    name = f"conveyor.test.{uuid.uuid4().hex[:10]}.mes"
    yield name
    connection = pika.BlockingConnection(pika.URLParameters(broker))
    connection.channel().queue_delete(name)
    connection.close()


def publish(broker: str, queue: str, bodies: list[bytes], content_type: str, **props: str) -> None:
    """Publish ``bodies`` to ``queue`` (declared as the connector declares it), confirmed."""
    connection = pika.BlockingConnection(pika.URLParameters(broker))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.confirm_delivery()
    for number, body in enumerate(bodies):
        channel.basic_publish(
            "",
            queue,
            body,
            pika.BasicProperties(
                delivery_mode=2, content_type=content_type, message_id=f"m{number}", **props
            ),
        )
    connection.close()


def depth(broker: str, queue: str) -> int:
    """Messages ready in ``queue`` (unacknowledged ones of closed connections count again)."""
    connection = pika.BlockingConnection(pika.URLParameters(broker))
    count = int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    connection.close()
    return count


def write_project(root: Path, queue: str, **settings: object) -> Project:
    """A project with a ``mesq`` system consuming ``queue``, mapped by ``mes_b2mml.yaml``."""
    import shutil

    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "mappings", root / "mappings", dirs_exist_ok=True)
    shutil.copytree(REPO / "master_data", root / "master_data", dirs_exist_ok=True)
    config = {
        "systems": {
            "mesq": {
                "connector": "amqp",
                "mapping": "mappings/mes_b2mml.yaml",
                "settings": {"queue": queue, "idle_s": 0.5, **settings},
            }
        },
        "routes": [],
    }
    (root / "conveyor.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return Project.load(root)


def stored(engine: Engine) -> list[str]:
    """Business keys of the messages of ``mesq`` (stock alerts the hub raised left out)."""
    with engine.connect() as conn:
        query = text("SELECT key FROM messages WHERE source = 'mesq'")
        return [str(k) for k in conn.execute(query).scalars()]


# ---------------------------------------------------------------------- settings
def test_registered_and_its_url_is_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    assert registry.load("amqp") is AmqpConnector
    assert AmqpConnector.secret_fields() == ["url"]
    with pytest.raises(ConfigError, match="url are secrets"):
        AmqpConnector("mesq", {"queue": "q", "url": "amqp://guest:guest@localhost"})
    monkeypatch.delenv("CONVEYOR_MESQ_URL", raising=False)
    with pytest.raises(ConfigError, match="CONVEYOR_MESQ_URL"):
        list(AmqpConnector("mesq", {"queue": "q"}).receive())


# ---------------------------------------------------------------------- against the broker
@needs_broker
def test_b2mml_and_json_messages_are_taken_in_and_bad_ones_rejected(
    tmp_path: Path, broker: str, queue: str, monkeypatch: pytest.MonkeyPatch, sqlite_engine: Engine
) -> None:
    monkeypatch.setenv("CONVEYOR_MESQ_URL", broker)
    project = write_project(tmp_path / "plant", queue, prefetch=5, xsd_dir=str(SCHEMAS))
    engine = MappingEngine.load(project)
    ledger = Ledger(sqlite_engine)
    publish(broker, queue, [document(n, 3, "V0600") for n in range(3)], "application/xml")
    publish(broker, queue, [document(10, 3, "V0701")], "text/xml; charset=utf-8")
    publish(broker, queue, [b"<not-b2mml/>", b"{not json"], "application/xml")
    publish(broker, queue, [b"{not json"], "application/json")
    publish(broker, queue, [b"plain words"], "text/plain")
    # a type the system has no mapping for: a canonical message of its own is taken as it is
    canonical = {
        "message_id": str(uuid.uuid4()),
        "type": "stock_adjustment",
        "source": "mesq",
        "key": "CANON-1/1",
        "occurred_at": "2026-11-21T19:55:00+08:00",
        "schema_version": "1.0",
        "payload": {
            "material": "RM-1001",
            "quantity": "-0.5",
            "uom": "KG",
            "location": "1000/WIP-MOLD",
            "reason": "scrap",
        },
    }
    publish(broker, queue, [json.dumps(canonical).encode()], "application/json")
    with registry.create(project.system("mesq")) as connector:
        result = receive_units(ledger, engine, connector)
    assert result.units == 9
    assert (result.acknowledged, result.failed, result.errors) == (5, 4, [])
    assert result.counts["accepted"] == 13  # 4 documents × 3 actuals + 1 canonical message
    assert result.counts["parked"] == 4  # each unreadable message, with its reason
    assert depth(broker, queue) == 0  # rejected without requeue: not offered again
    assert sorted(stored(sqlite_engine))[:2] == ["CANON-1/1", "PERF-0/1"]
    with sqlite_engine.connect() as conn:
        reasons = list(conn.execute(text("SELECT reason FROM parked_records")).scalars())
    assert any("not a performance document" in r or "not B2MML" in r for r in reasons)
    assert any("names no format" in r for r in reasons)


@needs_broker
def test_a_message_whose_records_cannot_be_stored_stays_queued(
    tmp_path: Path, broker: str, queue: str, monkeypatch: pytest.MonkeyPatch, sqlite_engine: Engine
) -> None:
    monkeypatch.setenv("CONVEYOR_MESQ_URL", broker)
    project = write_project(tmp_path / "plant", queue)
    engine = MappingEngine.load(project)
    publish(broker, queue, [document(n) for n in range(2)], "application/xml")
    with refusing_messages(sqlite_engine), registry.create(project.system("mesq")) as connector:
        result = receive_units(Ledger(sqlite_engine), engine, connector)
    # the pass stops at the first refusal: nothing acknowledged, nothing offered in a loop
    assert (result.units, result.acknowledged, len(result.errors)) == (1, 0, 1)
    assert stored(sqlite_engine) == []
    assert depth(broker, queue) == 2  # returned to the queue, offered again
    with registry.create(project.system("mesq")) as connector:
        again = receive_units(Ledger(sqlite_engine), engine, connector)
    assert (again.acknowledged, again.counts["accepted"]) == (2, 6)
    assert depth(broker, queue) == 0


@needs_broker
@pytest.mark.postgres
def test_a_consumer_killed_mid_way_takes_every_actual_in_exactly_once(
    tmp_path: Path, broker: str, queue: str, pg_engine: Engine
) -> None:
    project = write_project(tmp_path / "plant", queue, prefetch=10, xsd_dir=str(SCHEMAS))
    documents = 100
    publish(broker, queue, [document(n, 3) for n in range(documents)], "application/xml")
    env = {
        **os.environ,
        "CONVEYOR_MESQ_URL": broker,
        "CONVEYOR_DB_URL": pg_engine.url.render_as_string(hide_password=False),
    }
    env.pop("CONVEYOR_BROKER_URL", None)
    command = [
        sys.executable,
        "-m",
        "conveyor",
        "--project",
        str(project.root),
        "consume",
        "mesq",
        "--pause-s",
        "0.2",
    ]

    def run() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_for(condition: object, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not condition():  # type: ignore[operator]
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)

    first = run()
    wait_for(lambda: len(stored(pg_engine)) >= 90)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    # nothing was acknowledged before its commit: every document gone from the queue is stored
    taken = {key.split("/")[0] for key in stored(pg_engine)}
    acknowledged = documents - depth(broker, queue)
    assert acknowledged <= len(taken) < documents

    second = run()
    wait_for(lambda: len(stored(pg_engine)) >= documents * 3 and depth(broker, queue) == 0)
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0, second.stderr.read() if second.stderr else ""
    keys = stored(pg_engine)
    assert len(keys) == len(set(keys)) == documents * 3
    assert {f"PERF-{n}/{line}" for n in range(documents) for line in (1, 2, 3)} == set(keys)
    assert depth(broker, queue) == 0
    with pg_engine.connect() as conn:
        parked = conn.execute(text("SELECT count(*) FROM parked_records")).scalar_one()
    assert parked == 0
