"""Fixtures for delivery tests: a recording HTTP target, a project whose ``erp`` system posts to it
with the REST connector, and a way to run workers on each transport until the work is done."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, select

from conveyor.config import Project
from conveyor.delivery.worker import RunResult, Worker, WorkerOptions
from conveyor.ledger import Ledger
from conveyor.ledger.db import make_engine
from conveyor.ledger.models import DeliveryRow
from conveyor.messages import new_message
from conveyor.transport.rabbitmq import RabbitMQTransport
from tests.support.broker import broker_available, unique_url
from tests.support.recording_target import RecordingTarget

ROUTES = [
    {"type": ["production_output", "material_consumption"], "source": "mes", "targets": ["erp"]},
    {"type": "stock_transfer", "source": "wms", "targets": ["erp"]},
]


def write_project(
    root: Path,
    target_url: str,
    *,
    erp: dict[str, Any] | None = None,
    batch_size: int | None = None,
    **extra: Any,
) -> Project:
    """A project dir whose ``erp`` posts to ``target_url`` (REST connector with lookup); with
    ``batch_size`` it posts batches to the same URL."""
    settings = {
        "url": f"{target_url}/documents",
        "lookup_url": f"{target_url}/documents?key={{key}}",
        "timeout_s": 2,
        **({"batch_url": f"{target_url}/documents"} if batch_size else {}),
        **(erp or {}),
    }
    settings = {k: v for k, v in settings.items() if v is not None}
    erp_system: dict[str, Any] = {"connector": "rest", "role": "erp", "settings": settings}
    if batch_size:
        erp_system["batch_size"] = batch_size
    config = {
        "systems": {
            "mes": {"connector": "fake", "role": "mes"},
            "wms": {"connector": "fake", "role": "wms"},
            "erp": erp_system,
        },
        "routes": ROUTES,
        "retry": {"max_attempts": 4, "base_delay_s": 0.05, "max_delay_s": 0.2},
        "transport": {"stale_after_s": 2, "heartbeat_s": 0.3, "poll_s": 0.05, "concurrency": 2},
        **extra,
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "conveyor.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return Project.load(root)


def output(n: int, *, order: str | None = None, key: str | None = None) -> dict[str, Any]:
    """A production output message from the MES."""
    return new_message(
        "production_output",
        "mes",
        key or f"GR-{n}/1",
        {
            "order_id": order or f"PO-{n}",
            "material": "M1",
            "quantity": "1.5",
            "uom": "KG",
            "location": "1000/FG",
        },
    )


@dataclass
class Setup:
    """A ledger engine, a transport URL and a project, ready to deliver."""

    kind: str
    engine: Engine
    broker_url: str | None
    root: Path
    target: RecordingTarget
    project: Project | None = None

    def configure(self, **kwargs: Any) -> Project:
        """(Re)write the project (``erp=`` connector settings, other conveyor.yaml keys)."""
        self.project = write_project(self.root, self.target.url, **kwargs)
        return self.project

    @property
    def ledger(self) -> Ledger:
        """The ledger with the project's routes."""
        assert self.project is not None
        return Ledger(self.engine, self.project.router)

    def accept(self, messages: list[dict[str, Any]]) -> None:
        """Accept messages (all must be accepted)."""
        results = self.ledger.accept_batch(messages)
        assert [r.status for r in results] == ["accepted"] * len(messages), results

    def worker(self, **options: Any) -> Worker:
        """A worker for ``erp`` on this setup's transport."""
        assert self.project is not None
        return Worker(
            self.engine,
            targets=["erp"],
            broker_url=self.broker_url,
            project=self.project,
            options=WorkerOptions.from_project(self.project, **options),
        )

    def run(self, timeout: float = 30.0, **options: Any) -> RunResult:
        """Run a worker until idle; it must get there."""
        result = self.worker(**options).run(until_idle=True, timeout=timeout)
        assert result.idle, result
        return result

    def deliveries(self) -> list[DeliveryRow]:
        """Every delivery row, in id order."""
        from sqlalchemy.orm import Session

        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(select(DeliveryRow).order_by(DeliveryRow.id)))


@pytest.fixture
def target() -> Iterator[RecordingTarget]:
    """A recording HTTP target on 127.0.0.1."""
    with RecordingTarget() as recording:
        yield recording


def _broker_url() -> str:
    if not broker_available():
        if os.environ.get("CI"):
            pytest.fail("RabbitMQ is not reachable on 127.0.0.1:5672")
        pytest.skip("RabbitMQ not reachable")
    return unique_url()


@pytest.fixture(
    params=[
        "embedded-sqlite",
        pytest.param("embedded-postgresql", marks=pytest.mark.postgres),
        pytest.param("rabbitmq", marks=[pytest.mark.rabbitmq, pytest.mark.postgres]),
    ]
)
def setup(
    request: pytest.FixtureRequest, tmp_path: Path, target: RecordingTarget
) -> Iterator[Setup]:
    """Each delivery test runs on every transport (RabbitMQ with the PostgreSQL ledger)."""
    kind = str(request.param)
    broker = _broker_url() if kind == "rabbitmq" else None
    if kind == "embedded-sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
        Ledger(engine).upgrade()
    else:
        engine = request.getfixturevalue("pg_engine")
    ready = Setup(kind, engine, broker, tmp_path / "project", target)
    ready.configure()
    yield ready
    if broker:
        RabbitMQTransport(broker, policy=ready.project.retry if ready.project else None).delete(
            ["erp"]
        )
    if kind == "embedded-sqlite":
        engine.dispose()


Configure = Callable[..., Project]


@pytest.fixture
def rabbit_setup(tmp_path: Path, target: RecordingTarget, pg_engine: Engine) -> Iterator[Setup]:
    """PostgreSQL ledger + RabbitMQ with names of its own (deleted afterwards)."""
    ready = Setup("rabbitmq", pg_engine, _broker_url(), tmp_path / "project", target)
    ready.configure()
    yield ready
    assert ready.broker_url is not None
    RabbitMQTransport(
        ready.broker_url, policy=ready.project.retry if ready.project else None
    ).delete(["erp"])
