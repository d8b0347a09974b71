"""Faults against the real services: the broker restarts mid-stream, a worker is killed with
SIGKILL mid-batch. Afterwards every message is at the recording target exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from conveyor.delivery.worker import WorkerOptions
from conveyor.ledger.models import DeliveryRow
from conveyor.transport.rabbitmq import RabbitMQTransport
from tests.conveyor.delivery.conftest import Setup, _broker_url, output
from tests.support.broker import restart_app
from tests.support.recording_target import RecordingTarget

pytestmark = pytest.mark.postgres


def delivered(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(select(func.count()).where(DeliveryRow.status == "delivered")).scalar_one()
        )


def in_flight(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(select(func.count()).where(DeliveryRow.status == "in_flight")).scalar_one()
        )


def wait_until(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def assert_exactly_once(target: RecordingTarget, n: int) -> None:
    counts = target.counts()
    missing = n - len(counts)
    duplicates = target.duplicates()
    assert (missing, duplicates) == (0, {})


def _restart_mid_stream(setup: Setup, total: int, restarts: int) -> None:
    worker = setup.worker(concurrency=4)
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        batch = 50
        restart_at = {total * (k + 1) // (restarts + 1) for k in range(restarts)}
        for start in range(0, total, batch):
            setup.accept([output(n) for n in range(start + 1, min(total, start + batch) + 1)])
            time.sleep(0.05)
            if any(start <= at < start + batch for at in restart_at):
                restart_app(down_s=2.0)
        assert wait_until(lambda: delivered(setup.engine) == total, timeout=120)
    finally:
        worker.stop()
        runner.join(timeout=60)
    assert_exactly_once(setup.target, total)


@pytest.mark.rabbitmq
def test_broker_restart_mid_stream_loses_nothing_and_posts_nothing_twice(
    rabbit_setup: Setup,
) -> None:
    _restart_mid_stream(rabbit_setup, total=400, restarts=1)


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_broker_restarts_under_load_soak(rabbit_setup: Setup) -> None:
    _restart_mid_stream(rabbit_setup, total=5000, restarts=3)


@pytest.fixture(
    params=["embedded-postgresql", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)]
)
def kill_setup(
    request: pytest.FixtureRequest, tmp_path: Path, target: RecordingTarget, pg_engine: Engine
) -> Iterator[Setup]:
    """PostgreSQL ledger, embedded or RabbitMQ transport."""
    broker = _broker_url() if request.param == "rabbitmq" else None
    ready = Setup(str(request.param), pg_engine, broker, tmp_path / "project", target)
    ready.configure()
    yield ready
    if broker:
        RabbitMQTransport(broker, policy=ready.project.retry if ready.project else None).delete(
            ["erp"]
        )


def test_a_worker_killed_mid_batch_loses_nothing_and_posts_nothing_twice(
    kill_setup: Setup, pg_database_url: str
) -> None:
    setup = kill_setup
    total = 300
    setup.target.configure(delay_s=0.05)
    setup.accept([output(n) for n in range(1, total + 1)])
    env = {**os.environ, "CONVEYOR_DB_URL": pg_database_url}
    env.pop("CONVEYOR_BROKER_URL", None)
    if setup.broker_url:
        env["CONVEYOR_BROKER_URL"] = setup.broker_url
    victim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor",
            "--project",
            str(setup.root),
            "run",
            "--concurrency",
            "4",
            "--batch-size",
            "10",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        started = wait_until(lambda: len(setup.target.counts()) >= 60, timeout=60)
        assert started, victim.stderr.read() if victim.poll() is not None and victim.stderr else ""
        # Hold the target so the batches under way are still in flight when the kill lands
        # (without it a fast machine can finish all 300 between two polls).
        setup.target.configure(delay_s=1.0)
        assert wait_until(lambda: in_flight(setup.engine) > 0, timeout=30)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    # The posts the victim had sent are still answered (and recorded) by the target after the
    # kill; let them land, as a real ERP would, so the takeover's lookups find them.
    time.sleep(1.5)
    assert in_flight(setup.engine) > 0  # killed mid-batch: deliveries were left in flight
    assert len(setup.target.counts()) < total
    setup.target.configure(delay_s=0.0)
    result = setup.worker(concurrency=4).run(until_idle=True, timeout=90)
    assert result.idle
    assert_exactly_once(setup.target, total)
    assert delivered(setup.engine) == total
    assert WorkerOptions.from_project(setup.project).stale_after_s == 2
