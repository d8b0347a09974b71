"""``AmqpEventTrigger``: an Airflow event trigger that consumes a RabbitMQ queue — the hub's
parking events (``conveyor.events``) — and yields one ``TriggerEvent`` per message, so an
``AssetWatcher`` starts ``conveyor_on_parked`` within seconds of a parking.

pika's blocking client runs on one dedicated thread (it is not thread-safe, and the triggerer's
event loop must never block); a message is acknowledged only after its event was handed to the
triggerer, so one taken from the queue is never lost to a crash before that (it may come twice).
A lost broker is logged and reconnected with backoff; the trigger never ends by itself.

The broker URL is ``CONVEYOR_EVENTS_URL`` (else ``CONVEYOR_BROKER_URL``) in the triggerer's
environment, or ``url`` when given — keep passwords out of ``url``: trigger arguments are stored
in Airflow's database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from conveyor.events import DEFAULT_EXCHANGE, DEFAULT_QUEUE, connection_parameters, declare
from conveyor.retry import backoff_delay
from conveyor.transport.rabbitmq import RECONNECT

log = logging.getLogger(__name__)

CLASSPATH = "conveyor.airflow.triggers.AmqpEventTrigger"


def broker_url(url: str | None) -> str:
    """The broker to consume from (see the module docstring)."""
    chosen = os.environ.get("CONVEYOR_EVENTS_URL") or url or os.environ.get("CONVEYOR_BROKER_URL")
    if not chosen:
        raise ValueError("AmqpEventTrigger: no broker (url=, CONVEYOR_EVENTS_URL)")
    return chosen


class _Consumer:
    """The queue on one pika connection, used from one thread only."""

    def __init__(self, url: str, queue: str, exchange: str) -> None:
        self.url, self.queue, self.exchange = url, queue, exchange
        self.connection: Any = None
        self.channel: Any = None
        self.failures = 0

    def get(self, wait_s: float) -> tuple[int, dict[str, Any]] | None:
        """The next message (delivery tag, decoded event), or None after ``wait_s`` without."""
        import pika.exceptions

        try:
            if self.channel is None or not self.channel.is_open:
                self._connect()
            method, properties, body = self.channel.basic_get(self.queue, auto_ack=False)
            self.failures = 0
            if method is None:
                self.connection.sleep(wait_s)  # serves heartbeats while waiting
                return None
            return method.delivery_tag, decode(body, properties)
        except (pika.exceptions.AMQPError, OSError) as exc:
            self.failures += 1
            delay = backoff_delay(self.failures, RECONNECT)
            log.warning("parking events: broker unavailable (%s); again in %.1fs", exc, delay)
            self.close()
            time.sleep(delay)
            return None

    def ack(self, tag: int) -> None:
        """Acknowledge a message whose event the triggerer has (a lost channel: it comes again)."""
        try:
            self.channel.basic_ack(tag)
        except Exception as exc:
            log.warning("parking events: ack failed, the event may come again: %s", exc)
            self.close()

    def _connect(self) -> None:
        import pika

        self.close()
        self.connection = pika.BlockingConnection(connection_parameters(self.url))
        self.channel = self.connection.channel()
        self.channel.basic_qos(prefetch_count=1)
        declare(self.channel, self.exchange, self.queue)

    def close(self) -> None:
        """Close the connection (unacknowledged messages go back to the queue)."""
        connection, self.connection, self.channel = self.connection, None, None
        if connection is not None:
            try:
                connection.close()
            except Exception as exc:
                log.debug("parking events: close: %s", type(exc).__name__)


def decode(body: bytes, properties: Any = None) -> dict[str, Any]:
    """A message body as an event: its JSON object, or the text under ``raw``."""
    text = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        return {"raw": text}
    return data if isinstance(data, dict) else {"raw": data}


class AmqpEventTrigger(BaseEventTrigger):
    """Yields a ``TriggerEvent`` for each message of ``queue`` (bound to ``exchange``)."""

    def __init__(
        self,
        queue: str = DEFAULT_QUEUE,
        exchange: str = DEFAULT_EXCHANGE,
        url: str | None = None,
        poll_s: float = 1.0,
    ) -> None:
        super().__init__()
        self.queue = queue
        self.exchange = exchange
        self.url = url
        self.poll_s = float(poll_s)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and arguments, as the triggerer rebuilds it."""
        return (
            CLASSPATH,
            {
                "queue": self.queue,
                "exchange": self.exchange,
                "url": self.url,
                "poll_s": self.poll_s,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Consume forever: one event per message, acknowledged after it was yielded."""
        consumer = _Consumer(broker_url(self.url), self.queue, self.exchange)
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(1, thread_name_prefix="conveyor-amqp")
        try:
            while True:
                got = await loop.run_in_executor(pool, consumer.get, self.poll_s)
                if got is None:
                    continue
                tag, event = got
                yield TriggerEvent(event)
                await loop.run_in_executor(pool, consumer.ack, tag)
        finally:
            pool.submit(consumer.close)
            pool.shutdown(wait=False)
