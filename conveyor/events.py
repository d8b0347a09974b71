"""Parking events: one JSON message on RabbitMQ each time the hub parks something, so an operator
(Airflow's ``conveyor_on_parked`` DAG, through its AMQP watcher) hears of it within seconds.

Configured by ``events:`` in ``conveyor.yaml`` — ``exchange`` (default ``conveyor.events``, a
durable topic exchange), ``queue`` (default ``conveyor.parked``, durable, bound to the exchange
with ``parked.#`` so events wait there for their consumer) and ``broker`` (an ``amqp://`` URL
without a password); ``CONVEYOR_EVENTS_URL`` (or else ``CONVEYOR_BROKER_URL``) overrides
``broker`` and may carry the password. No ``events:`` section: nothing is published.

An event is published only after the ledger's transaction that parked it commits, on a background
thread with publisher confirms and short timeouts: a delivery or an intake never waits for the
event broker, and never fails because of it. When the broker is down the event is logged and
dropped (the ledger still holds the parked row: ``conveyor parked`` shows it), and the publisher
tries again after ``RETRY_AFTER_S``. Routing keys: ``parked.delivery.<target>`` and
``parked.record.<system>``; the body is the event (``kind``, ids, reason, …) as JSON.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from conveyor.config import Project

log = logging.getLogger(__name__)

DEFAULT_EXCHANGE = "conveyor.events"
DEFAULT_QUEUE = "conveyor.parked"
BINDING = "parked.#"
RETRY_AFTER_S = 30.0
"""After a failed publish, events are dropped (logged) for this long before connecting again."""
QUEUE_SIZE = 10_000
PENDING = "conveyor.parked_events"
"""``Connection.info`` key of the events waiting for their transaction to commit."""


@dataclass(frozen=True)
class EventsConfig:
    """Where parking events go (``events:`` of ``conveyor.yaml``)."""

    url: str
    exchange: str = DEFAULT_EXCHANGE
    queue: str = DEFAULT_QUEUE

    @classmethod
    def from_project(cls, project: Project) -> EventsConfig | None:
        """The project's events settings, or None when it publishes none."""
        section = project.raw.get("events")
        if section is None:
            return None
        url = (
            os.environ.get("CONVEYOR_EVENTS_URL")
            or section.get("broker")
            or os.environ.get("CONVEYOR_BROKER_URL")
        )
        if not url:
            log.warning("events: no broker (events.broker, CONVEYOR_EVENTS_URL): not published")
            return None
        return cls(
            url=url,
            exchange=section.get("exchange", DEFAULT_EXCHANGE),
            queue=section.get("queue", DEFAULT_QUEUE),
        )


def connection_parameters(url: str) -> Any:
    """pika parameters for ``url`` with the RabbitMQ transport's timeouts (never wait long)."""
    from conveyor.transport.rabbitmq import parse_url

    return parse_url(url)[0]


def declare(channel: Any, exchange: str, queue_name: str) -> None:
    """The durable topic exchange and the durable queue bound to it (idempotent: the publisher
    and the consumer both declare, so whichever starts first keeps the events)."""
    channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
    channel.queue_declare(queue=queue_name, durable=True)
    channel.queue_bind(queue=queue_name, exchange=exchange, routing_key=BINDING)


def routing_key(event: Mapping[str, Any]) -> str:
    """``parked.<kind>.<target or system>`` (dots in names would split the key: replaced)."""
    where = str(event.get("target") or event.get("system") or "unknown").replace(".", "_")
    return f"parked.{event.get('kind', 'record')}.{where}"


class Publisher:
    """Publishes events from a background thread (see the module docstring)."""

    def __init__(self, config: EventsConfig) -> None:
        self.config = config
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connection: Any = None
        self._channel: Any = None
        self._down_until = 0.0
        self.published = 0
        self.dropped = 0

    def submit(self, events: Iterable[dict[str, Any]]) -> None:
        """Hand events to the background thread (never blocks: a full queue drops, logged)."""
        for item in events:
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self.dropped += 1
                log.warning("events: queue full, parking event dropped: %s", routing_key(item))
        self._start()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until what was submitted is published or dropped (True), at most ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self._queue.unfinished_tasks

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="conveyor-events", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._publish(item)
            finally:
                self._queue.task_done()

    def _publish(self, item: dict[str, Any]) -> None:
        if time.monotonic() < self._down_until:
            self.dropped += 1
            log.warning("events: broker down, parking event not published: %s", routing_key(item))
            return
        import pika

        try:
            channel = self._open()
            channel.basic_publish(
                exchange=self.config.exchange,
                routing_key=routing_key(item),
                body=json.dumps(item, default=str).encode(),
                properties=pika.BasicProperties(delivery_mode=2, content_type="application/json"),
                mandatory=True,
            )
            self.published += 1
        except Exception as exc:  # never let the event broker stop the hub
            from conveyor.redact import safe_text

            self.dropped += 1
            self._down_until = time.monotonic() + RETRY_AFTER_S
            log.warning(
                "events: parking event not published (%s): %s",
                routing_key(item),
                safe_text(exc),
            )
            self._close()

    def _open(self) -> Any:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        import pika

        self._close()
        self._connection = pika.BlockingConnection(connection_parameters(self.config.url))
        channel = self._connection.channel()
        channel.confirm_delivery()
        declare(channel, self.config.exchange, self.config.queue)
        self._channel = channel
        return channel

    def _close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                connection.close()
            except Exception as exc:  # already gone
                log.debug("events: close: %s", type(exc).__name__)

    def close(self, timeout: float = 5.0) -> None:
        """Publish what is waiting (at most ``timeout``), then stop the thread."""
        self.flush(timeout)
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)
        self._close()


_publishers: weakref.WeakKeyDictionary[Engine, Publisher] = weakref.WeakKeyDictionary()


def attach(engine: Engine, project: Project) -> Publisher | None:
    """Publish the parking events of ``engine``'s transactions when ``project`` says so."""
    config = EventsConfig.from_project(project)
    if config is None:
        return None
    existing = _publishers.get(engine)
    if existing is not None:
        return existing
    from sqlalchemy import event

    publisher = _publishers[engine] = Publisher(config)
    event.listen(engine, "commit", _on_commit)
    event.listen(engine, "rollback", _on_rollback)
    atexit.register(_close_at_exit, publisher)
    return publisher


def publisher_of(engine: Engine) -> Publisher | None:
    """The publisher attached to ``engine`` (None: events are off)."""
    return _publishers.get(engine)


def note_records(conn: Connection, rows: Sequence[Mapping[str, Any]], ids: Sequence[int]) -> None:
    """Parked input records inserted in ``conn``'s transaction: published once it commits."""
    if publisher_of(conn.engine) is None or not ids:
        return
    pending = conn.info.setdefault(PENDING, [])
    now = _now()
    for row, parked_id in zip(rows, ids, strict=True):
        pending.append(
            {
                "kind": "record",
                "parked_id": parked_id,
                "stage": row.get("stage"),
                "system": row.get("system"),
                "message_type": row.get("message_type"),
                "file": row.get("file"),
                "line": row.get("line"),
                "reason": row.get("reason"),
                "parked_at": now,
            }
        )


def deliveries_parked(engine: Engine, ids: Sequence[int]) -> None:
    """Deliveries whose parking has committed: published with their target, message and reason
    as the ledger now holds them (``conveyor parked`` shows the same rows)."""
    publisher = publisher_of(engine)
    if publisher is None or not ids:
        return
    from conveyor.delivery.status import parked_deliveries

    now = _now()
    rows = parked_deliveries(engine, ids=ids)
    publisher.submit(
        {
            "kind": "delivery",
            "delivery_id": row["id"],
            "target": row["target"],
            "status": row["status"],
            "message_id": row["message_id"],
            "type": row["type"],
            "source": row["source"],
            "key": row["key"],
            "reason": row.get("reason"),
            "parked_at": now,
        }
        for row in rows
    )


def _on_commit(conn: Connection) -> None:
    pending = conn.info.pop(PENDING, None)
    publisher = publisher_of(conn.engine)
    if pending and publisher is not None:
        publisher.submit(pending)


def _on_rollback(conn: Connection) -> None:
    conn.info.pop(PENDING, None)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _close_at_exit(publisher: Publisher) -> None:
    """Close ``publisher`` at interpreter exit without pika's error lines about a connection the
    broker already dropped (a restarted broker): its log handlers may be closed by then, and
    nothing is lost — a parked row stays in the ledger whether or not its event went out."""
    pika_log = logging.getLogger("pika")  # its modules' loggers inherit this level
    was = pika_log.level
    pika_log.setLevel(logging.CRITICAL + 1)
    try:
        publisher.close()
    finally:
        pika_log.setLevel(was)
