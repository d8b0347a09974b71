"""``AmqpEventTrigger`` against the real RabbitMQ (the short form CI runs; the whole path through
``airflow standalone`` is in test_on_parked.py): an event the hub's publisher sends comes out of
the trigger's ``run()`` as a ``TriggerEvent``, is acknowledged only once handed over, and the
trigger survives its own serialisation."""

from __future__ import annotations

import pika
import pytest

from conveyor.events import EventsConfig, Publisher
from tests.support.airflow import airflow_env, run_python
from tests.support.broker import BROKER
from tests.support.events import event_names

__all__ = ["airflow_env", "event_names"]  # the fixtures used here

pytestmark = pytest.mark.rabbitmq

CONSUME = """
import asyncio, json, time
from airflow.triggers.base import TriggerEvent
from conveyor.airflow.triggers import AmqpEventTrigger

made = AmqpEventTrigger(queue={queue!r}, exchange={exchange!r}, url={url!r}, poll_s=0.2)
classpath, kwargs = made.serialize()
trigger = AmqpEventTrigger(**kwargs)  # as the triggerer rebuilds it

async def take(acknowledge):
    events = trigger.run()
    started = time.perf_counter()
    event = await asyncio.wait_for(events.__anext__(), 30)
    took = time.perf_counter() - started
    if acknowledge:  # the generator acknowledges when asked for the next event
        try:
            await asyncio.wait_for(events.__anext__(), 1.5)
        except asyncio.TimeoutError:
            pass
    await events.aclose()
    assert isinstance(event, TriggerEvent)
    return event.payload, took

first, _ = asyncio.run(take(acknowledge=False))   # dropped before acknowledging: comes again
again, took = asyncio.run(take(acknowledge=True))
print(json.dumps({{"classpath": classpath, "kwargs": kwargs, "first": first, "again": again,
                  "seconds": took}}))
"""


def test_the_trigger_yields_a_published_parking_event_and_acknowledges_it_after(
    airflow_env: dict[str, str], event_names: dict[str, str]
) -> None:
    publisher = Publisher(EventsConfig(url=BROKER, **event_names))
    event = {"kind": "delivery", "delivery_id": 7, "target": "sap", "reason": "HTTP 422"}
    publisher.submit([event])
    assert publisher.flush(10)
    assert publisher.published == 1
    publisher.close()

    out = run_python(CONSUME.format(url=BROKER, **event_names), airflow_env)
    assert out["classpath"] == "conveyor.airflow.triggers.AmqpEventTrigger"
    assert out["kwargs"] == {**event_names, "url": BROKER, "poll_s": 0.2}
    assert out["first"] == event
    assert out["again"] == event  # not acknowledged the first time: offered again
    print(f"trigger: event out of run() {out['seconds']:.2f} s after asking")

    connection = pika.BlockingConnection(pika.URLParameters(BROKER))
    channel = connection.channel()
    left = channel.queue_declare(event_names["queue"], passive=True).method.message_count
    connection.close()
    assert left == 0  # acknowledged once handed over
