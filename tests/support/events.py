"""Parking-event names of their own on the local RabbitMQ for one test (deleted afterwards)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pika
import pytest

from tests.support.broker import BROKER, broker_available


def delete_names(names: dict[str, str]) -> None:
    """Delete the events queue and exchange ``names`` from the broker."""
    connection = pika.BlockingConnection(pika.URLParameters(BROKER))
    channel = connection.channel()
    channel.queue_delete(names["queue"])
    channel.exchange_delete(names["exchange"])
    connection.close()


@pytest.fixture
def event_names() -> Iterator[dict[str, str]]:
    """A unique events ``exchange`` and ``queue`` (skipped without a broker, failed on CI)."""
    if not broker_available():
        if os.environ.get("CI"):
            pytest.fail("RabbitMQ is not reachable on 127.0.0.1:5672")
        pytest.skip("RabbitMQ not reachable")
    suffix = uuid.uuid4().hex[:10]
    names = {"exchange": f"conveyor.test.{suffix}.events", "queue": f"conveyor.test.{suffix}.q"}
    yield names
    delete_names(names)
