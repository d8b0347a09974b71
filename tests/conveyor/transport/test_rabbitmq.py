"""RabbitMQ packs several deliveries into one broker message: a job that has to come back alone
does, the message is acked only when every job in it is settled, and the wire form is plain
JSON. Runs on the real broker on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from conveyor.transport import Transport
from conveyor.transport.base import Envelope
from conveyor.transport.rabbitmq import RabbitMQTransport, pack_body
from tests.conveyor.transport.conftest import TARGET
from tests.conveyor.transport.test_contract import collect

pytestmark = pytest.mark.rabbitmq

Make = Callable[..., Transport]
Enqueue = Callable[[Transport, int], list[int]]


@pytest.fixture
def kind() -> str:
    """This module runs on RabbitMQ only."""
    return "rabbitmq"


def test_a_packed_message_carries_ids_of_one_routing_key() -> None:
    body = pack_body([Envelope(7, "erp", "production_output", "mes"), Envelope(9, "erp", "x", "y")])
    assert json.loads(body) == {
        "delivery_ids": [7, 9],
        "target": "erp",
        "type": "production_output",
        "source": "mes",
    }


def test_jobs_of_one_message_come_back_alone_when_retried_or_released(
    make_transport: Make, enqueue: Enqueue
) -> None:
    transport = make_transport("packed", pack=10)
    assert isinstance(transport, RabbitMQTransport)
    ids = enqueue(transport, 5)
    depth = transport.depths([TARGET])[TARGET]
    assert depth.ready + depth.held <= 1  # one broker message for the five
    jobs = {j.delivery_id: j for j in collect(transport, 5)}
    assert sorted(jobs) == ids
    assert {j.token.size for j in jobs.values()} == {5}
    first, second, third, *rest = ids
    asked = time.monotonic()
    transport.retry_later([(jobs[first], 0.5)])
    transport.release([jobs[second]])
    transport.ack([jobs[third], *(jobs[i] for i in rest)])
    (released,) = collect(transport, 1, timeout=5.0)
    assert released.delivery_id == second
    assert released.token.size == 1
    (retried,) = collect(transport, 1, timeout=5.0)
    assert retried.delivery_id == first
    assert time.monotonic() - asked >= 0.4
    transport.ack([released, retried])
    assert transport.fetch(10, timeout=0.5) == []
    transport.close()  # everything was settled: the packed message was acked, nothing returns
    again = make_transport("after")
    assert again.fetch(10, timeout=1.0) == []


def test_a_packed_message_is_requeued_whole_when_the_consumer_goes(
    make_transport: Make, enqueue: Enqueue
) -> None:
    leaving = make_transport("leaving", pack=10)
    ids = enqueue(leaving, 4)
    held = sorted(collect(leaving, 4), key=lambda j: j.delivery_id)
    leaving.ack(held[:3])  # one job still open: the message cannot be acked yet
    time.sleep(0.2)
    leaving.close()
    staying = make_transport("staying", pack=10)
    again = collect(staying, 4, timeout=10.0)
    assert sorted(j.delivery_id for j in again) == ids
    staying.ack(again)
