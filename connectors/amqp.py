"""AMQP inbound: the ``amqp`` connector consumes an MES's (or WMS's) messages from a RabbitMQ queue,
one document per message, with pika.

Settings: ``queue`` (required); ``exchange`` and ``binding_key`` (the system's exchange, bound to
the queue when given; ``exchange_type`` default ``topic``); ``declare`` (default true: the queue
is declared durable, ``queue_type`` default ``quorum``; false when the system owns it);
``prefetch`` (messages the broker hands out ahead, default 50); ``format`` (a reader of the
``conveyor.formats`` group, e.g. ``b2mml``), else by the message's content type:
``application/json`` (a canonical message, or the system's own JSON records mapped by its
mapping; one object, an array, or JSON lines) or ``application/xml`` / ``text/xml`` (B2MML);
``message_type`` (the type of mapped JSON records when the message's ``type`` property does not
say); ``idle_s`` (a pass ends after this long without a message, default 1);
``max_message_bytes``; and the settings of the format (``xsd_dir``, ``material_uses``, …).
Secret: ``url`` (``amqp://user:password@host:5672/vhost``, ``CONVEYOR_<CONNECTION>_URL`` or an
Airflow Connection), read only through ``secret()``; pika options pass in its query as for the
RabbitMQ transport (heartbeat, socket timeout, …, with the same defaults).

A message is acknowledged only after its records are accepted or parked and committed (the
inbound driver, ``conveyor.runtime.inbound``, calls ``ack``); a message that cannot be read at all
is parked with its reason and rejected without requeue (never offered forever; a dead-letter
exchange on the queue keeps a copy); a message whose records could not be stored (the database
refused) is returned to the queue and ends the pass, so the next pass offers it again — never in
a tight loop. Each message's body hash is marked with its last batch, so a message redelivered
after a crash between commit and ack is acknowledged unread. A lost connection ends the pass
(unacknowledged messages go back to the queue); the next pass reconnects with the RabbitMQ
transport's backoff.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pika
import pika.exceptions

from conveyor.connector import Connector, RawRecord, ReceivedUnit
from conveyor.errors import (
    ConfigError,
    TransientError,
    UnreadableFileError,
    UnreadableRecordError,
)
from conveyor.redact import safe_text
from conveyor.retry import backoff_delay

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    "application/json": "json",
    "text/json": "json",
    "application/x-ndjson": "json",
    "application/xml": "b2mml",
    "text/xml": "b2mml",
}
"""Content type → format, when the system names none."""
MAX_MESSAGE_BYTES = 128 << 20
"""RabbitMQ's own default largest message."""
_CONNECTION_ERRORS = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.StreamLostError,
    OSError,
)


def read_json(body: bytes, *, name: str, message_type: str | None) -> Iterator[RawRecord]:
    """The records of a JSON body (``conveyor.messages`` rules: exact decimals, depth and length
    limits); a body none of whose records can be read is unreadable as a whole."""
    from conveyor.mapping.readers import decode_bytes
    from conveyor.messages import records_of_text

    text, encoding, marked = decode_bytes(body)
    records = [
        RawRecord(record, file=name, line=line, message_type=message_type)
        for line, record in records_of_text(text, encoding=encoding, marked=marked)
    ]
    if not records:
        raise UnreadableFileError(f"{name}: an empty message")
    if all(isinstance(r.data, Exception) for r in records):
        raise UnreadableFileError(f"{name}: not JSON: {records[0].data}")
    yield from records


class AmqpConnector(Connector):
    """Receives documents from a RabbitMQ queue (see the module docstring)."""

    kind = "amqp"
    capabilities = frozenset({"receive", "health"})
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["queue"],
        "properties": {
            "url": {"type": "string", "secret": True},
            "queue": {"type": "string", "minLength": 1, "maxLength": 255},
            "exchange": {"type": "string", "minLength": 1, "maxLength": 255},
            "exchange_type": {"enum": ["topic", "direct", "fanout", "headers"]},
            "binding_key": {"type": "string", "maxLength": 255},
            "declare": {"type": "boolean"},
            "queue_type": {"enum": ["quorum", "classic"]},
            "prefetch": {"type": "integer", "minimum": 1, "maximum": 65535},
            "format": {"type": "string", "minLength": 1},
            "message_type": {"type": "string", "minLength": 1},
            "idle_s": {"type": "number", "exclusiveMinimum": 0},
            "max_message_bytes": {"type": "integer", "minimum": 1},
        },
    }

    def __init__(
        self, name: str, settings: Mapping[str, Any] | None = None, *, connection: str | None = None
    ) -> None:
        super().__init__(name, settings, connection=connection)
        self.queue = str(self.settings["queue"])
        self.prefetch = int(self.settings.get("prefetch", 50))
        self.idle_s = float(self.settings.get("idle_s", 1.0))
        self.max_bytes = int(self.settings.get("max_message_bytes", MAX_MESSAGE_BYTES))
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._failures = 0

    # ------------------------------------------------------------------ connection
    def _parameters(self) -> pika.URLParameters:
        from conveyor.transport.rabbitmq import parse_url

        url = self.secret("url")
        if not url:
            from conveyor.runtime.secrets import env_name

            raise ConfigError(
                f"system {self.name!r} (amqp): no broker URL: set "
                f"{env_name(self.connection or self.name, 'url')} or an Airflow Connection"
            )
        parameters, _own = parse_url(url)
        return parameters

    def _connect(self) -> Any:
        """The channel, connecting (after the transport's backoff when the last attempt failed)
        and declaring the queue and its binding."""
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self._drop()
        if self._failures:
            from conveyor.transport.rabbitmq import RECONNECT

            time.sleep(backoff_delay(self._failures, RECONNECT))
        try:
            connection = pika.BlockingConnection(self._parameters())
        except _CONNECTION_ERRORS as exc:
            self._failures += 1
            raise TransientError(f"{self.name}: broker unavailable: {safe_text(exc)}") from None
        try:
            channel = connection.channel()
            self._declare(channel)
            channel.basic_qos(prefetch_count=self.prefetch)
        except pika.exceptions.ChannelClosedByBroker as exc:
            connection.close()
            raise ConfigError(
                f"system {self.name!r} (amqp): the broker refused the queue or binding: "
                f"{safe_text(exc)}"
            ) from None
        except _CONNECTION_ERRORS as exc:
            self._failures += 1
            raise TransientError(f"{self.name}: broker unavailable: {safe_text(exc)}") from None
        self._failures = 0
        self._connection, self._channel = connection, channel
        return channel

    def _declare(self, channel: Any) -> None:
        if self.settings.get("declare", True):
            queue_type = self.settings.get("queue_type", "quorum")
            channel.queue_declare(self.queue, durable=True, arguments={"x-queue-type": queue_type})
        exchange = self.settings.get("exchange")
        if exchange:
            channel.exchange_declare(
                exchange, exchange_type=self.settings.get("exchange_type", "topic"), durable=True
            )
            channel.queue_bind(
                self.queue, exchange, routing_key=str(self.settings.get("binding_key", "#"))
            )

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            # closing a broken connection: nothing left to save
            with contextlib.suppress(*_CONNECTION_ERRORS):
                connection.close()

    # ------------------------------------------------------------------ inbound
    def receive(self) -> Iterator[ReceivedUnit]:
        """The messages waiting in the queue, one unit each, until none came for ``idle_s``."""
        channel = self._connect()
        pending: dict[str, Any] | None = None
        try:
            for method, properties, body in channel.consume(
                self.queue, inactivity_timeout=self.idle_s
            ):
                if pending is not None and not pending["settled"]:
                    # the driver could not store it: back to the queue, and this pass ends (the
                    # database refuses now; the next pass offers it again, never in a tight loop)
                    channel.basic_nack(pending["tag"], requeue=True)
                    pending = None
                    break
                pending = None
                if method is None:
                    break
                pending = {"tag": method.delivery_tag, "settled": False}
                yield self._unit(channel, method, properties, body, pending)
            if pending is not None and not pending["settled"]:
                channel.basic_nack(pending["tag"], requeue=True)
            channel.cancel()
        except _CONNECTION_ERRORS as exc:
            # unacknowledged messages go back to the queue with the connection
            log.warning("%s: connection lost: %s", self.name, safe_text(exc))
            self._failures += 1
            self._drop()

    def _unit(
        self, channel: Any, method: Any, properties: Any, body: bytes, pending: dict[str, Any]
    ) -> ReceivedUnit:
        label = properties.message_id or str(method.delivery_tag)
        name = f"amqp:{self.queue}/{label}"
        tag = method.delivery_tag

        def ack() -> None:
            channel.basic_ack(tag)
            pending["settled"] = True

        def fail(reason: str) -> None:
            log.warning("%s: %s rejected: %s", self.name, name, reason)
            channel.basic_reject(tag, requeue=False)
            pending["settled"] = True

        return ReceivedUnit(
            name=name,
            records=self._records(properties, body, name),
            ack=ack,
            fail=fail,
            message_type=self._message_type(properties),
            content_hash=hashlib.sha256(body).hexdigest(),
        )

    def _message_type(self, properties: Any) -> str | None:
        configured = self.settings.get("message_type")
        return str(configured) if configured else (properties.type or None)

    def _records(self, properties: Any, body: bytes, name: str) -> Iterator[RawRecord]:
        if len(body) > self.max_bytes:
            raise UnreadableFileError(
                f"{name}: {len(body)} bytes, over max_message_bytes ({self.max_bytes})"
            )
        kind = self.settings.get("format")
        if not kind:
            content_type = (properties.content_type or "").split(";")[0].strip().lower()
            kind = CONTENT_TYPES.get(content_type)
            if kind is None:
                raise UnreadableFileError(
                    f"{name}: content type {content_type or 'none'!r} names no format "
                    f"(set the system's format, or send {', '.join(sorted(CONTENT_TYPES))})"
                )
        if kind == "json":
            yield from read_json(body, name=name, message_type=self._message_type(properties))
            return
        from conveyor.formats import reader

        for raw in reader(str(kind))(io.BytesIO(body), name=name, settings=self.settings):
            if isinstance(raw.data, UnreadableRecordError) or raw.message_type is not None:
                yield raw
            else:
                yield RawRecord(
                    raw.data, raw.file, raw.line, raw.cursor, self._message_type(properties)
                )

    # ------------------------------------------------------------------ operations
    def check(self) -> str:
        """Connect and look at the queue (declaring it as configured)."""
        channel = self._connect()
        declared = channel.queue_declare(self.queue, passive=True)
        return f"queue {self.queue}: {declared.method.message_count} message(s) waiting"

    def close(self) -> None:
        """Close the connection (unacknowledged messages go back to the queue)."""
        self._drop()
