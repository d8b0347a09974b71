"""Isolation: one target down (refusing connections, or timing out) backs up only its own queue;
the other targets keep flowing. In one run and one worker process the same load is delivered to
three targets with all of them up, then with ``down`` refusing or hanging: the other two
targets' throughput (deliveries recorded delivered per second) is measured in both phases and
printed, on the embedded transport and on RabbitMQ. When ``down`` comes back, its backlog
drains, each document exactly once. (The all-up phase also delivers to ``down``: the same
worker threads carry a third more work then.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, func, select

from conveyor.config import Project
from conveyor.delivery.worker import Worker, WorkerOptions
from conveyor.ledger import Ledger
from conveyor.ledger.db import make_engine
from conveyor.ledger.models import DeliveryRow
from conveyor.transport.rabbitmq import RabbitMQTransport
from simulators.http_target import HttpTarget
from tests.conveyor.delivery.conftest import _broker_url, output

TARGETS = ("erp", "wms", "down")
PER_PHASE = 300


def _project(root: Path, urls: dict[str, str], timeout_s: float) -> Project:
    systems: dict[str, Any] = {"mes": {"connector": "fake", "role": "mes"}}
    for name, url in urls.items():
        systems[name] = {
            "connector": "rest",
            "settings": {
                "url": f"{url}/documents",
                "lookup_url": f"{url}/documents?key={{key}}",
                "timeout_s": timeout_s,
                "connect_timeout_s": timeout_s,
            },
        }
    config = {
        "systems": systems,
        "routes": [{"type": "production_output", "source": "mes", "targets": list(TARGETS)}],
        # a target down for an hour keeps retrying (never parked by a short policy)
        "retry": {"max_attempts": 10_000, "base_delay_s": 0.2, "max_delay_s": 5.0},
        "transport": {"stale_after_s": 5, "heartbeat_s": 0.5, "poll_s": 0.05},
        "alerts": {"on_accept": False},
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "conveyor.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return Project.load(root)


@dataclass
class Plant:
    """Three recording targets, a project routing the MES's output to all, a ledger, a broker."""

    engine: Engine
    project: Project
    targets: dict[str, HttpTarget]
    broker_url: str | None

    def accept(self, first: int, count: int) -> None:
        """Accept ``count`` outputs numbered from ``first``."""
        ledger = Ledger(self.engine, self.project.router)
        results = ledger.accept_batch([output(n) for n in range(first, first + count)])
        assert {r.status for r in results} == {"accepted"}

    def delivered(self, target: str) -> int:
        """Deliveries of ``target`` recorded as delivered in the ledger."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(
                        DeliveryRow.target == target, DeliveryRow.status == "delivered"
                    )
                ).scalar_one()
            )

    def open_deliveries(self, target: str) -> int:
        """Deliveries of ``target`` not yet delivered."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(
                        DeliveryRow.target == target, DeliveryRow.status != "delivered"
                    )
                ).scalar_one()
            )


@pytest.fixture(params=["embedded", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def plant(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Plant]:
    """Embedded transport on SQLite, or RabbitMQ on the session's PostgreSQL ledger."""
    targets = {name: HttpTarget().start() for name in TARGETS}
    broker = _broker_url() if request.param == "rabbitmq" else None
    if broker:
        engine = request.getfixturevalue("pg_engine")
    else:
        engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
        Ledger(engine).upgrade()
    project = _project(tmp_path / "plant", {n: t.url for n, t in targets.items()}, 1.0)
    yield Plant(engine, project, targets, broker)
    for target in targets.values():
        target.stop()
    if broker:
        RabbitMQTransport(broker, policy=project.retry).delete(list(TARGETS))
    else:
        engine.dispose()


def _flow(plant: Plant, expected: int, timeout: float = 120) -> float:
    """Seconds until ``erp`` and ``wms`` each have ``expected`` deliveries recorded delivered."""
    started = time.monotonic()
    while any(plant.delivered(n) < expected for n in ("erp", "wms")):
        assert time.monotonic() - started < timeout, "the other targets stopped flowing"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.parametrize("outage", ["refusing", "timing out"])
def test_a_target_down_backs_up_only_its_own_queue(plant: Plant, outage: str) -> None:
    worker = Worker(
        plant.engine,
        targets=list(TARGETS),
        broker_url=plant.broker_url,
        project=plant.project,
        options=WorkerOptions.from_project(plant.project, concurrency=4),
    )
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    down = plant.targets["down"]
    try:
        plant.accept(1, PER_PHASE)
        all_up = _flow(plant, PER_PHASE)
        while plant.delivered("down") < PER_PHASE:
            time.sleep(0.02)

        if outage == "refusing":
            down.stop()  # its port refuses connections
        else:
            down.configure(delay_s=5.0, reject={"*": 503})  # no answer within the 1 s timeout
        plant.accept(PER_PHASE + 1, PER_PHASE)
        one_down = _flow(plant, 2 * PER_PHASE)
        backlog = plant.open_deliveries("down")
        others_open = plant.open_deliveries("erp") + plant.open_deliveries("wms")
        rate_up, rate_down = 2 * PER_PHASE / all_up, 2 * PER_PHASE / one_down
        print(
            f"\nisolation ({'rabbitmq' if plant.broker_url else 'embedded'}, down {outage}): "
            f"erp+wms {rate_up:.0f} deliveries/s all up, {rate_down:.0f}/s with one down "
            f"({rate_down / rate_up:.0%}); down's own backlog {backlog}, others' {others_open}"
        )
        assert others_open == 0
        assert backlog >= PER_PHASE * 0.9  # its queue backs up (a few may have got through)
        assert rate_down >= 0.25 * rate_up  # the others keep flowing

        if outage == "refusing":  # back on its port
            down = plant.targets["down"] = HttpTarget(port=down.port).start()
        else:
            down.configure(delay_s=0.0, reject={})
        back = time.monotonic()
        while plant.delivered("down") < 2 * PER_PHASE:
            assert time.monotonic() - back < 60, "the backlog never drained"
            time.sleep(0.05)
        print(f"down back: its backlog of {backlog} drained in {time.monotonic() - back:.1f} s")
        assert len(down.counts()) == (PER_PHASE if outage == "refusing" else 2 * PER_PHASE)
        assert down.duplicates() == {}
    finally:
        worker.stop()
        runner.join(timeout=90)


def test_a_hanging_target_does_not_hold_up_the_others_in_the_same_batch(plant: Plant) -> None:
    """Regression: one worker thread, one claimed batch holding 30 deliveries to a target that
    never answers (1 s timeout) and 30 to ``erp``. Before the breaker each of the 30 waited out
    its timeout in turn (30 s) before the batch was recorded; now the first timeout marks the
    target down and the rest of it is given back untried, attempts undone."""
    down = plant.targets["down"]
    down.configure(delay_s=5.0, reject={"*": 503})
    plant.accept(1, 30)
    worker = Worker(
        plant.engine,
        targets=["erp", "down"],
        broker_url=plant.broker_url,
        project=plant.project,
        options=WorkerOptions.from_project(plant.project, concurrency=1, batch_size=100),
    )
    runner = threading.Thread(target=worker.run, daemon=True)
    started = time.monotonic()
    runner.start()
    try:
        while plant.delivered("erp") < 30:
            assert time.monotonic() - started < 60
            time.sleep(0.02)
        took = time.monotonic() - started
    finally:
        worker.stop()
        runner.join(timeout=90)
    with plant.engine.connect() as conn:
        tried = conn.execute(
            select(func.sum(DeliveryRow.attempts)).where(DeliveryRow.target == "down")
        ).scalar_one()
    print(f"\nerp's 30 delivered in {took:.1f} s beside a hanging target ({tried} attempts on it)")
    assert took < 10
    assert plant.open_deliveries("down") == 30
    assert int(tried or 0) <= 10  # probes, not one timeout per delivery
