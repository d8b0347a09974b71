"""Stuck deliveries (their transport message lost) are republished and delivered exactly once on
every transport; pruning the outbox deletes only rows of delivered deliveries."""

from __future__ import annotations

from datetime import timedelta

import pika
from sqlalchemy import func, select, update

from conveyor.delivery.maintenance import (
    outbox_size,
    prune_outbox,
    republish_stuck,
    stuck_deliveries,
)
from conveyor.delivery.relay import OutboxRelay
from conveyor.delivery.replay import replay_deliveries
from conveyor.ledger.models import DeliveryRow, OutboxRow, utcnow
from conveyor.transport.rabbitmq import RabbitMQTransport, parse_url
from tests.conveyor.delivery.conftest import Setup, output

NOW = timedelta(0)


def lose_transport_messages(setup: Setup) -> None:
    """Hand every outbox row to the transport, then lose what was handed over: on RabbitMQ the
    relay publishes and the queue is purged; on the embedded transport the rows are marked
    published (as a relay would) so no consumer fetches them."""
    if setup.broker_url is None:
        with setup.engine.begin() as conn:
            conn.execute(update(OutboxRow).values(published_at=utcnow()))
        return
    transport = publish_all(setup)
    with pika.BlockingConnection(parse_url(setup.broker_url)[0]) as connection:
        purged = connection.channel().queue_purge(transport.queue_name("erp"))
    assert purged.method.message_count > 0


def publish_all(setup: Setup) -> RabbitMQTransport:
    """Publish the outbox to RabbitMQ without consuming it."""
    assert setup.broker_url is not None
    assert setup.project is not None
    transport = RabbitMQTransport(setup.broker_url, policy=setup.project.retry)
    transport.start(["erp"], consume=False)
    try:
        OutboxRelay(setup.engine, transport).drain()
    finally:
        transport.close()
    return transport


def test_a_lost_transport_message_is_found_republished_and_delivered_once(setup: Setup) -> None:
    setup.accept([output(n) for n in range(1, 6)])
    lose_transport_messages(setup)

    stalled = setup.worker().run(until_idle=True, timeout=2.0)
    assert not stalled.idle
    assert setup.target.counts() == {}
    assert stuck_deliveries(setup.engine, older_than=timedelta(hours=1)) == []  # too recent
    stuck = stuck_deliveries(setup.engine, older_than=NOW)
    assert [(s["target"], s["status"]) for s in stuck] == [("erp", "pending")] * 5

    assert republish_stuck(setup.engine, older_than=NOW) == 5
    assert republish_stuck(setup.engine, older_than=NOW) == 0  # already waiting for the relay
    setup.run()
    assert sorted(setup.target.counts().values()) == [1] * 5
    assert setup.target.duplicates() == {}
    assert [d.status for d in setup.deliveries()] == ["delivered"] * 5
    assert stuck_deliveries(setup.engine, older_than=NOW) == []


def test_republishing_what_is_still_queued_posts_nothing_twice(rabbit_setup: Setup) -> None:
    setup = rabbit_setup
    setup.accept([output(n) for n in range(1, 4)])
    publish_all(setup)  # one copy queued per delivery
    assert republish_stuck(setup.engine, older_than=NOW) == 3
    publish_all(setup)  # a second copy of each
    setup.run()
    assert sorted(setup.target.counts().values()) == [1, 1, 1]
    assert [d.status for d in setup.deliveries()] == ["delivered"] * 3


def test_only_deliveries_untouched_long_enough_are_stuck(setup: Setup) -> None:
    setup.accept([output(n) for n in range(1, 4)])
    lose_transport_messages(setup)
    first = setup.deliveries()[0].id
    with setup.engine.begin() as conn:
        conn.execute(
            update(DeliveryRow)
            .where(DeliveryRow.id == first)
            .values(updated_at=utcnow() - timedelta(hours=2))
        )
    stuck = stuck_deliveries(setup.engine, older_than=timedelta(hours=1))
    assert [s["id"] for s in stuck] == [first]
    assert stuck_deliveries(setup.engine, older_than=timedelta(hours=1), targets=["wms"]) == []
    assert republish_stuck(setup.engine, older_than=timedelta(hours=1)) == 1


def test_pruning_keeps_the_rows_a_replay_needs(setup: Setup) -> None:
    setup.target.configure(reject={"mes:GR-2/1": 422})
    setup.accept([output(n) for n in range(1, 5)])
    setup.run()
    statuses = {d.id: d.status for d in setup.deliveries()}
    assert sorted(statuses.values()) == ["delivered"] * 3 + ["parked"]
    assert outbox_size(setup.engine)["total"] == 4

    assert prune_outbox(setup.engine, older_than=timedelta(days=1)) == 0  # too recent
    assert prune_outbox(setup.engine, older_than=NOW, chunk_size=2) == 3
    assert prune_outbox(setup.engine, older_than=NOW) == 0
    with setup.engine.connect() as conn:
        left = conn.execute(select(OutboxRow.delivery_id)).scalars().all()
    parked = [i for i, s in statuses.items() if s == "parked"]
    assert left == parked
    assert outbox_size(setup.engine) == {"total": 1, "unpublished": 0, "prunable": 0}

    setup.target.configure(reject={})
    assert replay_deliveries(setup.engine, parked).requeued == 1
    setup.run()
    assert [d.status for d in setup.deliveries()] == ["delivered"] * 4
    assert setup.target.duplicates() == {}
    with setup.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(OutboxRow)).scalar_one() == 1
