"""Fixtures for the transport contract suite: the same tests run on every transport."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from conveyor.config import RetryPolicy
from conveyor.delivery.relay import OutboxRelay
from conveyor.ledger import Ledger
from conveyor.ledger.db import make_engine
from conveyor.messages import new_message
from conveyor.routing import Router
from conveyor.transport import Transport, create
from conveyor.transport.rabbitmq import RabbitMQTransport
from tests.support.broker import broker_available, unique_url

TARGET = "erp"
ROUTES = [{"type": "production_output", "source": "mes", "targets": [TARGET]}]
POLICY = RetryPolicy(max_attempts=5, base_delay_s=0.5, max_delay_s=2.0)


@pytest.fixture(
    params=[
        "embedded-sqlite",
        pytest.param("embedded-postgresql", marks=pytest.mark.postgres),
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
    ]
)
def kind(request: pytest.FixtureRequest) -> str:
    """Which transport the contract runs on."""
    return str(request.param)


@pytest.fixture
def contract_engine(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The ledger behind the transport (SQLite, or the session's PostgreSQL database)."""
    if kind == "embedded-postgresql":
        yield request.getfixturevalue("pg_engine")
        return
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    Ledger(engine).upgrade()
    yield engine
    engine.dispose()


@pytest.fixture
def transport_url(kind: str) -> Iterator[str | None]:
    """The transport URL; a RabbitMQ run gets names of its own, deleted afterwards."""
    if kind != "rabbitmq":
        yield None
        return
    if not broker_available():
        if os.environ.get("CI"):
            pytest.fail("RabbitMQ is not reachable on 127.0.0.1:5672")
        pytest.skip("RabbitMQ not reachable")
    url = unique_url()
    yield url
    RabbitMQTransport(url, policy=POLICY).delete([TARGET])


@pytest.fixture
def make_transport(
    contract_engine: Engine, transport_url: str | None
) -> Iterator[Callable[..., Transport]]:
    """Start transports consuming the test target; all are closed afterwards."""
    made: list[Transport] = []

    def make(
        consumer_id: str | None = None, *, consume: bool = True, **options: object
    ) -> Transport:
        transport = create(
            transport_url,
            engine=contract_engine,
            consumer_id=consumer_id,
            policy=POLICY,
            options={"poll_s": 0.05, **options},
        )
        transport.start([TARGET], consume=consume)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close()


@pytest.fixture
def enqueue(contract_engine: Engine) -> Callable[[Transport, int], list[int]]:
    """Accept ``n`` messages routed to the target and hand them to the transport; their
    delivery ids."""
    ledger = Ledger(contract_engine, Router.from_config(ROUTES))
    counter = iter(range(1, 1_000_000))

    def enqueue(transport: Transport, n: int) -> list[int]:
        messages = []
        for _ in range(n):
            i = next(counter)
            messages.append(
                new_message(
                    "production_output",
                    "mes",
                    f"GR-{i}/1",
                    {
                        "order_id": f"PO-{i}",
                        "material": "M1",
                        "quantity": "1",
                        "uom": "KG",
                        "location": "L1",
                    },
                )
            )
        assert all(r.status == "accepted" for r in ledger.accept_batch(messages))
        if transport.needs_relay:
            OutboxRelay(contract_engine, transport).drain()
        from sqlalchemy import select

        from conveyor.ledger.models import DeliveryRow

        with contract_engine.connect() as conn:
            ids = conn.execute(select(DeliveryRow.id).order_by(DeliveryRow.id)).scalars().all()
        return list(ids)[-n:]

    return enqueue
