"""The whole event path, slow: the hub parks a record, its parking event goes to RabbitMQ, and the
AMQP asset watcher of a real ``airflow standalone`` (loopback, a port of its own) starts
``conveyor_on_parked``, whose task logs the event and calls the notifier. Prints the latency from
the publish to the DAG run being created. CI runs the short form (test_triggers.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.airflow import BIN, conveyor, make_airflow_env, require_airflow
from tests.support.broker import BROKER, broker_available
from tests.support.events import delete_names

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: object, timeout: float, what: str) -> float:
    """Poll ``check()`` until true; the seconds it took."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if check():  # type: ignore[operator]
            return time.perf_counter() - started
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], dict[str, str]]]:
    """``airflow standalone`` over a project whose only DAG is ``conveyor_on_parked``."""
    require_airflow()
    if not broker_available():
        pytest.skip("RabbitMQ not reachable")
    root = tmp_path / "project"
    (root / "mappings").mkdir(parents=True)
    (root / "master_data").mkdir()
    suffix = uuid.uuid4().hex[:10]
    names = {"exchange": f"conveyor.test.{suffix}.events", "queue": f"conveyor.test.{suffix}.q"}
    config = {
        "systems": {},  # no system: conveyor_on_parked is the only DAG
        "events": {"broker": BROKER, **names},
        "airflow": {
            "on_parked": {"notifier": "tests.support.airflow:record_notification", "poll_s": 0.2}
        },
    }
    (root / "conveyor.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    env = {
        **make_airflow_env(tmp_path / "airflow_home"),
        "CONVEYOR_PROJECT": str(root),
        "CONVEYOR_DB_URL": f"sqlite:///{root / 'ledger.db'}",
        "CONVEYOR_NOTIFY_FILE": str(root / "notified.jsonl"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
    }
    assert conveyor(["db", "upgrade"], env, root).returncode == 0
    log_path = Path(os.environ.get("CONVEYOR_STANDALONE_LOG", tmp_path / "standalone.log"))
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(BIN / "airflow"), "standalone"],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield root, env, names
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            delete_names(names)


def healthy(port: str) -> bool:
    try:
        url = f"http://127.0.0.1:{port}/api/v2/monitor/health"
        with urllib.request.urlopen(url, timeout=2) as answer:
            health = json.load(answer)
    except OSError:
        return False
    parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    if not all((health.get(part) or {}).get("status") == "healthy" for part in parts):
        return False
    try:  # the API the tasks report to
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/execution/health", timeout=2):
            return True
    except OSError:
        return False


def runs(env: dict[str, str]) -> list[tuple[str, str]]:
    database = Path(env["AIRFLOW_HOME"]) / "airflow.db"
    if not database.exists():
        return []
    try:
        with sqlite3.connect(database, timeout=5) as db:
            return list(
                db.execute(
                    "select run_id, state from dag_run where dag_id = 'conveyor_on_parked' "
                    "order by id"
                )
            )
    except sqlite3.OperationalError:  # not migrated yet
        return []


def park_one(root: Path, env: dict[str, str], n: int) -> None:
    """Accept one invalid record: the ledger parks it and publishes the event."""
    (root / f"bad{n}.json").write_text(json.dumps({"source": "mes", "key": f"BAD-{n}"}))
    done = conveyor(["accept", f"bad{n}.json"], env, root)
    assert done.returncode == 1, done.stderr  # rejected, parked


def test_a_parking_event_starts_conveyor_on_parked(
    standalone: tuple[Path, dict[str, str], dict[str, str]],
) -> None:
    root, env, _ = standalone
    up = wait_until(lambda: healthy(env["AIRFLOW__API__PORT"]), 180, "airflow standalone healthy")
    print(f"airflow standalone healthy after {up:.1f} s")

    park_one(root, env, 1)  # the first run also waits for the watcher to be registered
    first = wait_until(lambda: len(runs(env)) >= 1, 240, "first conveyor_on_parked run")
    print(f"first run {first:.1f} s after the first parking (watcher start-up included)")

    started = time.perf_counter()
    park_one(root, env, 2)  # the event is published when the command's transaction commits
    command = time.perf_counter() - started
    wait_until(lambda: len(runs(env)) >= 2, 120, "second conveyor_on_parked run")
    latency = time.perf_counter() - started
    print(
        f"conveyor accept (parks, publishes) took {command:.2f} s; from its start to the "
        f"second DAG run created: {latency:.2f} s"
    )
    assert latency < 30

    notified = root / "notified.jsonl"
    wait_until(
        lambda: notified.exists() and len(notified.read_text().splitlines()) >= 2, 120, "notifier"
    )
    events = [json.loads(line) for line in notified.read_text().splitlines()]
    assert {e["kind"] for e in events} == {"record"}
    assert {e["system"] for e in events} == {"mes"}
    assert all(e["reason"] and e["parked_id"] for e in events)
    assert all(state in ("success", "running", "queued") for _, state in runs(env))
